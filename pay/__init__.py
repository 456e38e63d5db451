"""The mobile H5 pay page at /pay/: pick an amount, pay by WeChat Pay or Alipay, watch it arrive."""
