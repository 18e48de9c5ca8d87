"""HTTP for TUF with the device's token, and TUF's errors as the update policy's refusals."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface

from edge_runtime.update.policy import (
    Refusal,
    ReleaseUnavailable,
    UpdateRefused,
    VerificationFailed,
)

FETCH_CHUNK = 64 * 1024


class TokenFetcher(FetcherInterface):
    """TUF's downloads over httpx with the device's bearer token, streamed in chunks."""

    def __init__(self, client: httpx.Client,
                 on_chunk: Callable[[str, int], None] | None = None) -> None:
        self._client = client
        self._on_chunk = on_chunk

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._client.send(self._client.build_request("GET", url), stream=True)
        except httpx.HTTPError as error:
            raise tuf_errors.DownloadError(f"{url}: {type(error).__name__}: {error}") from error
        if response.status_code != 200:
            response.close()
            raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {response.status_code}",
                                               response.status_code)
        return self._chunks(url, response)

    def _chunks(self, url: str, response: httpx.Response) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in response.iter_bytes(FETCH_CHUNK):
                received += len(chunk)
                yield chunk
                if self._on_chunk is not None:
                    self._on_chunk(url, received)
        except httpx.HTTPError as error:
            raise tuf_errors.DownloadError(f"{url}: {type(error).__name__}: {error}") from error
        finally:
            response.close()


def refusal_of(error: Exception, what: str) -> UpdateRefused:
    """A TUF or download error as the refusal the heartbeat reports."""
    kinds: tuple[tuple[type[Exception], Refusal], ...] = (
        (tuf_errors.DownloadLengthMismatchError, Refusal.TOO_LARGE),
        (tuf_errors.LengthOrHashMismatchError, Refusal.HASH),
        (tuf_errors.ExpiredMetadataError, Refusal.EXPIRED),
        (tuf_errors.BadVersionNumberError, Refusal.METADATA_ROLLBACK),
        (tuf_errors.UnsignedMetadataError, Refusal.SIGNATURE),
        (tuf_errors.RepositoryError, Refusal.REPOSITORY),
    )
    detail = f"{what}: {type(error).__name__}: {error}"
    for kind, refusal in kinds:
        if isinstance(error, kind):
            return VerificationFailed(detail, refusal)
    if isinstance(error, tuf_errors.DownloadHTTPError) and error.status_code == 404:
        return ReleaseUnavailable(detail, Refusal.MISSING_FILE)
    return ReleaseUnavailable(detail)


