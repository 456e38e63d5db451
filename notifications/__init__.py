"""Delivery channels (SMS, voice, e-mail, WeChat, push webhook), templates and dispatch policy.

channel.py holds the interface; policy.py decides (pure); the lead's jobs execute decisions.
"""
