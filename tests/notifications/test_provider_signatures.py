"""The signers (client side) and the sandboxes' checkers (server side) reproduce the providers'
own published examples."""

from __future__ import annotations

import json

from notifications import aliyun_rpc, tc3
from notifications.sandbox import aliyun as aliyun_sandbox
from notifications.sandbox import tencent as tencent_sandbox

# Aliyun's RPC signature documentation example (ECS DescribeRegions, secret "testsecret").
ALIYUN_DOC = {
    "AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
    "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26",
}
ALIYUN_DOC_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
    "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"
    "%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
)
# Aliyun SMS documentation example (SendSms with a Chinese SignName, secret "testSecret").
ALIYUN_SMS_DOC = {
    "AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
    "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007",
    "TemplateParam": json.dumps({"customer": "test"}, separators=(",", ":")),
    "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25",
}
# Tencent's TC3 documentation example (CVM DescribeInstances at 1551113065).
TC3_DOC_PAYLOAD = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)
TC3_DOC_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Host": "cvm.tencentcloudapi.com"}
TC3_DOC_SECRET = "Gu5t9xGARNpq86cd98joQYCN3*******"
TC3_DOC_SIGNATURE = "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"


def test_aliyun_string_to_sign_matches_the_documented_example():
    assert aliyun_rpc.string_to_sign("GET", ALIYUN_DOC) == ALIYUN_DOC_STRING_TO_SIGN


def test_aliyun_signature_matches_the_documented_example_on_both_sides():
    assert aliyun_rpc.sign("GET", ALIYUN_DOC, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert aliyun_sandbox.expected_signature("GET", ALIYUN_DOC, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_aliyun_sms_signature_with_chinese_sign_name_matches_the_documented_example():
    assert aliyun_rpc.sign("GET", ALIYUN_SMS_DOC, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert aliyun_sandbox.expected_signature("GET", ALIYUN_SMS_DOC, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_percent_encoding_keeps_only_unreserved_characters():
    assert aliyun_rpc.percent_encode("a b*c~d/e+f=") == "a%20b%2Ac~d%2Fe%2Bf%3D"
    assert aliyun_rpc.percent_encode("电") == "%E7%94%B5"


def test_aliyun_signature_depends_on_the_http_method():
    assert aliyun_rpc.sign("POST", ALIYUN_DOC, "testsecret") != aliyun_rpc.sign("GET", ALIYUN_DOC, "testsecret")


def test_tc3_canonical_request_and_signature_match_the_documented_example():
    canonical, signed = tc3.canonical_request("POST", "/", "", TC3_DOC_HEADERS, TC3_DOC_PAYLOAD)
    assert signed == "content-type;host"
    assert canonical.endswith("35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064")
    assert tc3.string_to_sign(1551113065, "cvm", canonical).split("\n") == [
        "TC3-HMAC-SHA256", "1551113065", "2019-02-25/cvm/tc3_request",
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031",
    ]
    assert tc3.signature(TC3_DOC_SECRET, 1551113065, "cvm", canonical) == TC3_DOC_SIGNATURE


def test_tencent_sandbox_checker_reproduces_the_documented_signature():
    assert tencent_sandbox.expected_signature(
        TC3_DOC_SECRET, TC3_DOC_HEADERS, ["content-type", "host"], TC3_DOC_PAYLOAD,
        1551113065, "2019-02-25", "cvm",
    ) == TC3_DOC_SIGNATURE


def test_tc3_authorization_header_has_the_documented_shape():
    auth = tc3.authorization("AKIDEXAMPLE", "secret", "sms", 1551113065, "POST",
                             {"Content-Type": "application/json; charset=utf-8",
                              "Host": "sms.tencentcloudapi.com", "X-TC-Action": "SendSms"}, b"{}")
    head, signature = auth.rsplit("Signature=", 1)
    assert head == ("TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2019-02-25/sms/tc3_request, "
                    "SignedHeaders=content-type;host;x-tc-action, ")
    assert len(signature) == 64
