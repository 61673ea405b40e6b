#!/usr/bin/env python3
"""A legacy Kavro client in a few lines of PyNaCl, for the interop tests.

It speaks the relay's v1 API with the standard library only (urllib) and does
the end-to-end layer the original way (API.md part 5):

  ciphertext      = base64(nonce[24] || Box(ephemeral_sk, recipient_pk).encrypt(text))
  ephemeral_pubkey = hex(ephemeral_pk)

Commands (each prints one JSON object per line on stdout):

  send SERVER TOKEN RECIPIENT_ID RECIPIENT_PK_HEX TEXT
      Send TEXT (UTF-8, no envelope) to the recipient, as a legacy client does.

  open-inbox SERVER TOKEN SECRET_HEX
      Fetch the inbox (without acknowledging) and open the outer box of each
      message with the identity secret SECRET_HEX. For each message prints
      {"id", "sender_id", "length", "plaintext_hex", "envelope": {"version",
      "sender_key"} or null}.
"""

import base64
import json
import sys
import urllib.request

from nacl.public import Box, PrivateKey, PublicKey


def call(method, url, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read().decode())


def send(server, token, recipient_id, recipient_pk_hex, text):
    ephemeral = PrivateKey.generate()
    box = Box(ephemeral, PublicKey(bytes.fromhex(recipient_pk_hex)))
    # EncryptedMessage is nonce || ciphertext (tag included), as libsodium's crypto_box_easy.
    sealed = bytes(box.encrypt(text.encode("utf-8")))
    answer = call(
        "POST",
        server + "/messages/",
        token,
        {
            "recipient_id": int(recipient_id),
            "ciphertext": base64.b64encode(sealed).decode("ascii"),
            "ephemeral_pubkey": bytes(ephemeral.public_key).hex(),
        },
    )
    print(json.dumps(answer))


def open_inbox(server, token, secret_hex):
    me = PrivateKey(bytes.fromhex(secret_hex))
    inbox = call("GET", server + "/messages/inbox?order=asc", token)
    for message in inbox["messages"]:
        wire = base64.b64decode(message["ciphertext"], validate=True)
        ephemeral = PublicKey(bytes.fromhex(message["ephemeral_pubkey"]))
        plaintext = Box(me, ephemeral).decrypt(wire[24:], wire[:24])
        envelope = None
        if plaintext[:4] == b"\xffKVR":
            envelope = {"version": plaintext[4], "sender_key": plaintext[5:37].hex()}
        print(
            json.dumps(
                {
                    "id": message["id"],
                    "sender_id": message["sender_id"],
                    "length": len(wire),
                    "plaintext_hex": plaintext.hex(),
                    "envelope": envelope,
                }
            )
        )


def main(argv):
    if len(argv) >= 2 and argv[1] == "send" and len(argv) == 7:
        send(*argv[2:])
    elif len(argv) >= 2 and argv[1] == "open-inbox" and len(argv) == 5:
        open_inbox(*argv[2:])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
