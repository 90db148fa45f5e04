"""Kombu's filesystem transport with atomic writes (the embedded mode's broker).

Kombu writes a message file in place: a consumer polling the folder can pick the file up
while it is still empty or half written, fail to decode it, and lose the message.  Here the
message is written under a name consumers ignore and renamed into place, which is atomic on
one filesystem.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

__all__ = ["Channel", "Transport"]


class Channel(filesystem.Channel):
    """Filesystem channel whose ``_put`` renames a complete file into the queue folder."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # a leading dot: consumers match "<stamp>_<uuid>.<queue>.msg" and skip this name
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """The filesystem transport using :class:`Channel`."""

    Channel = Channel
