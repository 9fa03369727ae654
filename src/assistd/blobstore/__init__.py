"""Where uploaded file bytes live: one small interface (base.py), a local-disk backend (local.py)."""

from assistd.blobstore.base import BadKey, BlobNotFound, BlobStore, TooLarge, check_key
from assistd.blobstore.local import LocalBlobStore

__all__ = ["BadKey", "BlobNotFound", "BlobStore", "LocalBlobStore", "TooLarge", "check_key"]
