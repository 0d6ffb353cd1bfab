"""A short tour of mirrorkv on the embedded default store (SQLite, ./mirrorkv.db).

Run it with ``make run`` (or ``python examples/quickstart.py``). Set
``MIRRORKV_URL`` to run the same tour on another store, e.g. ``memory://`` or
``file:///tmp/blobs``. Everything it writes lives under ``quickstart/`` and is
removed at the end.
"""

from __future__ import annotations

import os
import tempfile

import mirrorkv
from mirrorkv.mirror import Mirror


def step(title: str) -> None:
    print(f"\n== {title}")


def main() -> None:
    with mirrorkv.open() as store:  # $MIRRORKV_URL, else sqlite:mirrorkv.db
        print(f"store: {store!r}")

        step("put and get, with a content type and user metadata")
        meta = store.put(
            "quickstart/photos/2026/cat.jpg",
            b"\xff\xd8 not really a jpeg",
            content_type="image/jpeg",
            metadata={"owner": "ann"},
        )
        print(f"put  -> {meta}")
        print(f"get  -> {store.get('quickstart/photos/2026/cat.jpg')!r}")
        print(f"head -> size={meta.size} etag={meta.etag} owner={meta.metadata['owner']}")

        step("listing: ordered by UTF-8 bytes, by prefix, one level at a time")
        store.put_many({f"quickstart/photos/2025/img{i:03d}.jpg": b"x" * i for i in range(1, 6)})
        store.put("quickstart/photos/readme.txt", b"hello", content_type="text/plain")
        after = "quickstart/photos/2025/img002.jpg"
        for key in store.keys("quickstart/photos/2025/", start_after=after):
            print(f"  key  {key}")
        listing = store.ls("quickstart/photos/")
        print(f"  ls   prefixes={listing.prefixes} objects={[m.key for m in listing.objects]}")

        step("conditional writes: create-only and compare-and-swap")
        store.delete("quickstart/config")
        first = store.put("quickstart/config", b"v1", if_none_match="*")
        try:
            store.put("quickstart/config", b"again", if_none_match="*")
        except mirrorkv.PreconditionFailed as error:
            print(f"  create-only refused: {error}")
        store.put("quickstart/config", b"v2", if_match=first.etag)
        print(f"  after CAS: {store.get('quickstart/config')!r}")

        step("atomic counters")
        store.delete("quickstart/hits")
        store.incr("quickstart/hits", 5, initial=0)
        print(f"  hits = {store.decr('quickstart/hits')}")

        step("streaming a large value in and out")
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "big.bin")
            with open(source, "wb") as out:
                out.write(os.urandom(1 << 20) * 8)  # 8 MiB
            big = store.put_file("quickstart/big.bin", source)
            read = 0
            with store.open("quickstart/big.bin") as stream:
                while chunk := stream.read(65536):
                    read += len(chunk)
            print(f"  stored {big.size:,} bytes, streamed back {read:,}")

        step("copy keeps metadata")
        copied = store.copy("quickstart/photos/2026/cat.jpg", "quickstart/backup/cat.jpg")
        print(f"  copy -> {copied.key} ({copied.content_type}, owner={copied.metadata['owner']})")

        step("the mirror: what is stored, answered from a local index")
        with (
            tempfile.TemporaryDirectory() as tmp,
            Mirror(store, index=f"sqlite://{tmp}/index.db", bucket="quickstart") as mirror,
        ):
            report = mirror.sync("quickstart/")
            print(f"  sync: {report.added} keys recorded, {report.requests} listing request(s)")
            print(f"  du quickstart/photos/ -> {mirror.du('quickstart/photos/')}")
            for child, usage in mirror.du("quickstart/photos/", depth=1).children.items():
                print(f"    {child:<28} {usage.objects} objects {usage.bytes:>4} bytes")
            jpegs = mirror.find("quickstart/photos/*/*.jpg", min_size=3)
            print(f"  find */*.jpg of 3+ bytes -> {[m.key.rsplit('/', 1)[1] for m in jpegs]}")
            stats = mirror.stats()
            print(
                f"  {stats.local_answers} answers from the index, {stats.remote_requests} requests"
            )
            mirror.delete_many(list(mirror.keys("quickstart/")))  # the remote, then the index
            left = len(list(mirror.remote.keys("quickstart/")))
            print(f"  deleted through the mirror; left under quickstart/: {left} keys")


if __name__ == "__main__":
    main()
