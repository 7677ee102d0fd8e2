"""The ``http`` backend: a labeling vendor behind a URL.

With ``batch = 1`` each frame is one POST of its JPEG (``Content-Type: image/jpeg``, headers
``X-GTX-Frame-Id``, ``X-GTX-Labeler``, ``X-GTX-Metadata``: the described metadata as JSON,
ASCII-escaped), answered with JSON ``{"label": 0 | 1}``.

With ``batch > 1`` a batch is one POST of JSON (``Content-Type: application/json``, header
``X-GTX-Labeler``)::

    {"labeler": "<id>",
     "frames": [{"frame_id": "...", "metadata": {...}, "jpeg": "<base64>"}, ...]}

answered with ``{"labels": [0, 1, ...]}``: one label per frame, in the order sent. An item
that is not 0 or 1 (``null``, say) fails that frame alone; an HTTP error, a timeout, no JSON
or a list of the wrong length fails the whole batch.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from gtx_stream.pipeline.label.base import (
    Backend,
    Frame,
    LabelError,
    Outcome,
    check_batch_answer,
    check_label,
)


class HttpBackend(Backend):
    """POSTs frames to ``url``: one JPEG per POST, or with ``batch > 1`` one JSON batch."""

    kind = "http"

    def __init__(self, labeler_id: str, url: str, timeout: float = 10.0, batch: int = 1) -> None:
        super().__init__(labeler_id, batch)
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise LabelError(
                f"http labeler {labeler_id}: target must be an http(s) URL, got {url!r}"
            )
        self.url = url
        self.timeout = timeout

    def label(self, frame: Frame) -> int:
        if not frame.jpeg:
            raise self._error(frame, "no image stored to send")
        headers = {
            "Content-Type": "image/jpeg",
            "X-GTX-Frame-Id": frame.frame_id,
            "X-GTX-Metadata": json.dumps(frame.describe(), sort_keys=True),
        }
        body = self._post(frame.jpeg, headers, lambda m: self._error(frame, m))
        try:
            answer = json.loads(body)
        except ValueError:
            raise self._error(frame, f"{self.url} answered with no JSON: {body[:80]!r}") from None
        value = answer.get("label") if isinstance(answer, Mapping) else None
        label = check_label(value)
        if label is None:
            raise self._error(frame, f'{self.url} answered {body[:80]!r}, not {{"label": 0 or 1}}')
        return label

    def label_batch(self, frames: Sequence[Frame]) -> list[Outcome]:
        if self.batch == 1:
            return super().label_batch(frames)
        out: list[Outcome | None] = [
            None if frame.jpeg else self._error(frame, "no image stored to send")
            for frame in frames
        ]
        sent = [frame for frame, o in zip(frames, out, strict=True) if o is None]
        if sent:
            payload = {
                "labeler": self.labeler_id,
                "frames": [
                    {
                        "frame_id": frame.frame_id,
                        "metadata": frame.describe(),
                        "jpeg": base64.b64encode(frame.jpeg or b"").decode("ascii"),
                    }
                    for frame in sent
                ],
            }
            error = lambda m: self._batch_error(len(sent), m)  # noqa: E731
            body = self._post(
                json.dumps(payload).encode(), {"Content-Type": "application/json"}, error
            )
            try:
                answer: Any = json.loads(body)
            except ValueError:
                raise error(f"{self.url} answered with no JSON: {body[:80]!r}") from None
            if not isinstance(answer, Mapping) or "labels" not in answer:
                raise error(f'{self.url} answered {body[:80]!r}, not {{"labels": [...]}}')
            labels = iter(check_batch_answer(self, sent, answer["labels"], f"{self.url}"))
            out = [o if o is not None else next(labels) for o in out]
        return [o for o in out if o is not None]

    def _post(self, data: bytes, headers: dict[str, str], error: Any) -> bytes:
        request = urllib.request.Request(
            self.url,
            data=data,
            method="POST",
            headers={**headers, "Accept": "application/json", "X-GTX-Labeler": self.labeler_id},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as err:
            err.close()  # it holds the answer's socket: left to the collector, a ResourceWarning
            raise error(f"{self.url} answered HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, TimeoutError) as err:
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            if isinstance(reason, TimeoutError):  # connecting, or reading the answer
                message = f"{self.url} gave no answer within {self.timeout:g} s"
            else:
                message = f"cannot reach {self.url}: {reason}"
            raise error(message) from None
        except OSError as err:
            raise error(f"{self.url}: {err}") from None
