"""Manage API keys: ``python -m app.keys create|list|revoke``.

    python -m app.keys create --name ci --users someone,other --roles submit,read
    python -m app.keys create --name portal --users '*' --roles submit,read,cancel
    python -m app.keys list
    python -m app.keys revoke 3f9a1c0b2d4e

``create`` prints the key once (only its hash is kept). Keys go to MongoDB when
MONGODB_URI is set, else to SLURM_PROXY_API_KEYS_FILE.
"""
from __future__ import annotations

import argparse
import sys

from dotenv import load_dotenv

from . import services
from .auth import ROLES, describe, new_key
from .config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.keys", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--users", required=True,
                        help="comma-separated Slurm users the key may act for, or *")
    create.add_argument("--roles", default="submit,read",
                        help=f"comma-separated, of {', '.join(ROLES)} (default submit,read)")
    create.add_argument("--quiet", action="store_true", help="print only the key")
    sub.add_parser("list", help="list keys (never their secrets)")
    revoke = sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    args = parser.parse_args(argv)

    load_dotenv()
    store = services.build(load_config(), services.KEYS).keys
    if args.command == "create":
        try:
            plaintext, record = new_key(args.name, _split(args.users), _split(args.roles))
        except ValueError as exc:
            parser.error(str(exc))
        store.add(record)
        if args.quiet:
            print(plaintext)
        else:
            print(describe(record))
            print(f"key (shown once, keep it secret): {plaintext}")
        return 0
    if args.command == "list":
        for record in store.list():
            print(describe(record))
        return 0
    if store.revoke(args.id):
        print(f"revoked {args.id}")
        return 0
    print(f"no active key {args.id}", file=sys.stderr)
    return 1


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


if __name__ == "__main__":
    sys.exit(main())
