"""WeChat's message encryption (safe / compatible mode), with the key material prepared once.

The wire format is WeChat's (the same as wechatpy's WeChatCrypto, which the tests use as the
other side): base64 of AES-256-CBC(key, iv=key[:16]) over
`16 random bytes | 4-byte big-endian length | message | appid`, PKCS#7-padded to 32 bytes.
wechatpy builds a new cipher, re-decodes the key and re-parses the outer XML on every call;
on the bot's hot path that was a third of the request's CPU, so this keeps one `Cipher`
and checks the padding, the length and the app id strictly instead of trusting them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16
_LENGTH = struct.Struct(">I")

OUTER = ("<xml>\n<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n"
         "<MsgSignature><![CDATA[{signature}]]></MsgSignature>\n"
         "<TimeStamp>{timestamp}</TimeStamp>\n<Nonce><![CDATA[{nonce}]]></Nonce>\n</xml>")


class CipherError(Exception):
    """The ciphertext does not decode to a message for this app."""


class WrongApp(CipherError):
    """The message decrypts cleanly but names another app id."""


def signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


class MessageCipher:
    """Encrypt and decrypt callback messages for one official account (token, AES key, app id)."""

    __slots__ = ("token", "appid", "_appid", "_cipher")

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        key = base64.b64decode(encoding_aes_key + "=")
        if len(key) != 32:
            raise ValueError("EncodingAESKey must be 43 characters (32 bytes)")
        self.token = token
        self.appid = appid
        self._appid = appid.encode()
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    def decrypt(self, encrypted: str) -> str:
        """The XML inside an <Encrypt> element; CipherError when it is not ours or not intact."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as ex:
            raise CipherError("not base64") from ex
        if not raw or len(raw) % 16:
            raise CipherError("not a whole number of AES blocks")
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or pad > len(plain) - 20:
            raise CipherError("bad padding")
        body = plain[16:-pad]
        (length,) = _LENGTH.unpack_from(body)
        if length > len(body) - 4:
            raise CipherError("bad length")
        if body[4 + length:] != self._appid:
            raise WrongApp("message for another app")
        try:
            return body[4:4 + length].decode()
        except UnicodeDecodeError as ex:
            raise CipherError("message is not UTF-8") from ex

    def encrypt(self, message: str) -> str:
        """Base64 ciphertext of `message` for an <Encrypt> element."""
        data = message.encode()
        plain = b"".join((os.urandom(16), _LENGTH.pack(len(data)), data, self._appid))
        pad = BLOCK - len(plain) % BLOCK
        encryptor = self._cipher.encryptor()
        sealed = encryptor.update(plain + bytes((pad,)) * pad) + encryptor.finalize()
        return base64.b64encode(sealed).decode()

    def seal(self, message: str, nonce: str, timestamp: str) -> str:
        """The encrypted reply envelope WeChat expects (Encrypt, MsgSignature, TimeStamp, Nonce)."""
        encrypted = self.encrypt(message)
        return OUTER.format(encrypt=encrypted, signature=signature(self.token, timestamp, nonce, encrypted),
                            timestamp=timestamp, nonce=nonce)
