"""The one module that talks to Label Studio (through label-studio-sdk 2.x); returns our own types.

Nothing else in edgeloop imports `label_studio_sdk`. Tokens are Label Studio's legacy API tokens
(`LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true`): the same token also fetches task images, which
Label Studio serves from its local-files storage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

PAGE_SIZE = 100
T = TypeVar("T")


class LabelStudioError(ValueError):
    """Label Studio refused a request or could not be reached; `status` 0 means no answer."""

    def __init__(self, what: str, status: int, detail: str) -> None:
        super().__init__(f"Label Studio: {what}: " + (f"HTTP {status}: {detail}" if status
                                                      else detail))
        self.status = status


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    label_config: str


@dataclass(frozen=True)
class Annotation:
    id: int
    result: list[dict[str, Any]]
    was_cancelled: bool  # a skipped task carries a cancelled annotation
    ground_truth: bool = False


@dataclass(frozen=True)
class Prediction:
    id: int
    model_version: str
    score: float | None
    result: list[dict[str, Any]]


@dataclass(frozen=True)
class Task:
    id: int
    data: dict[str, Any]
    annotations: tuple[Annotation, ...] = ()
    predictions: tuple[Prediction, ...] = ()


@dataclass(frozen=True)
class NewTask:
    """A task to create: its data and, optionally, one pre-annotation."""

    data: dict[str, Any]
    prediction_result: list[dict[str, Any]] | None = None
    model_version: str = ""
    score: float | None = None


@dataclass(frozen=True)
class Webhook:
    id: int
    url: str
    actions: tuple[str, ...] = field(default=())


# Data Manager filters (the server ignores `only_annotated`; cancelled annotations are not
# counted in total_annotations, so a skipped task is neither finished nor open).
FINISHED = {"conjunction": "and", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number",
     "value": 0}]}
OPEN = {"conjunction": "and", "items": [
    {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number",
     "value": 0},
    {"filter": "filter:tasks:cancelled_annotations", "operator": "equal", "type": "Number",
     "value": 0}]}
TASK_FILTERS: dict[str, dict[str, Any] | None] = {"all": None, "finished": FINISHED,
                                                  "open": OPEN}


def _detail(body: Any) -> str:
    if isinstance(body, Mapping):
        parts = [json.dumps(body[k]) for k in ("detail", "validation_errors", "error")
                 if body.get(k)]
        if parts:
            return " ".join(parts)[:400]
    return str(body)[:400]


class LabelStudioClient:
    def __init__(self, url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, trust_env=False,
                                  headers={"Authorization": f"Token {token}"})
        self._sdk = LabelStudio(base_url=self.url, api_key=token, httpx_client=self._http)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _error(self, what: str, exc: ApiError | httpx.HTTPError) -> LabelStudioError:
        if isinstance(exc, ApiError):
            return LabelStudioError(what, exc.status_code or 0, _detail(exc.body))
        return LabelStudioError(what, 0, f"{type(exc).__name__}: {exc} ({self.url})")

    def _call(self, what: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except (ApiError, httpx.HTTPError) as exc:
            raise self._error(what, exc) from exc

    # -- who and what --------------------------------------------------------------------------

    def whoami(self) -> str:
        """The e-mail of the token's user (proves the token works on this server)."""
        return str(self._call("who am I", lambda: self._sdk.users.whoami()).email)

    def ensure_project(self, title: str, description: str, label_config: str) -> Project:
        """The project titled `title`, created if missing; its labelling config brought up to
        `label_config` if it differs. Idempotent."""
        found = self.find_projects(title)
        if not found:
            created = self._call("create project", lambda: self._sdk.projects.create(
                title=title, description=description, label_config=label_config,
                show_skip_button=True, enable_empty_annotation=True))
            return Project(int(created.id or 0), title, label_config)
        project = found[0]  # two of a title: the older one is ours
        if project.label_config.strip() != label_config.strip():
            self._call("update labelling config", lambda: self._sdk.projects.update(
                id=project.id, label_config=label_config))
        return Project(project.id, title, label_config)

    def find_projects(self, title: str) -> list[Project]:
        """Projects titled exactly `title`, oldest first."""
        listed: list[Any] = self._call("list projects", lambda: list(
            self._sdk.projects.list(title=title, page_size=PAGE_SIZE)))  # title: "contains"
        found = [Project(int(p.id or 0), str(p.title), p.label_config or "") for p in listed
                 if p.title == title]
        return sorted(found, key=lambda p: p.id)

    def ensure_local_storage(self, project_id: int, folder: Path, title: str) -> int:
        """Registers `folder` (below the server's LOCAL_FILES_DOCUMENT_ROOT) as the project's
        local-files storage, which is what lets Label Studio serve the images in it."""
        path = str(folder.resolve())
        storages = self._call("list local storages", lambda: self._sdk.import_storage.local.list(
            project=project_id))
        for storage in storages:
            if storage.path == path:
                return int(storage.id or 0)
        created = self._call("register local storage", lambda: self._sdk.import_storage.local
                             .create(project=project_id, path=path, title=title,
                                     use_blob_urls=False, recursive_scan=True))
        return int(created.id or 0)

    # -- tasks ---------------------------------------------------------------------------------

    def import_tasks(self, project_id: int, tasks: Sequence[NewTask]) -> list[int]:
        """Creates the tasks (with their pre-annotations); returns their ids in the same order."""
        if not tasks:
            return []
        payload = [_task_payload(t) for t in tasks]
        answer = self._call("import tasks", lambda: self._sdk.projects.import_tasks(
            id=project_id, request=payload, return_task_ids=True))  # type: ignore[arg-type]
        ids = [int(i) for i in (getattr(answer, "task_ids", None) or [])]
        if len(ids) != len(tasks):
            raise LabelStudioError("import tasks", 0,
                                   f"asked for {len(tasks)} tasks, {len(ids)} were created")
        return ids

    def tasks(self, project_id: int, state: str = "all", *,
              ordering: str | None = None) -> Iterator[Task]:
        """The project's tasks: "all", "finished" (with a submitted annotation) or "open"
        (neither annotated nor skipped); `ordering` is a Data Manager column, e.g.
        "-tasks:data.uncertainty"."""
        if state not in TASK_FILTERS:
            raise ValueError(f"task state {state!r} is not one of {sorted(TASK_FILTERS)}")
        query: dict[str, Any] = {}
        if TASK_FILTERS[state] is not None:
            query["filters"] = TASK_FILTERS[state]
        if ordering:
            query["ordering"] = [ordering]
        pager: Any = self._call("list tasks", lambda: self._sdk.tasks.list(
            project=project_id, query=json.dumps(query) if query else None,
            page_size=PAGE_SIZE, fields="all"))
        try:
            for item in pager:
                yield _task(item)
        except (ApiError, httpx.HTTPError) as exc:  # later pages are fetched while iterating
            raise self._error("list tasks", exc) from exc

    def task(self, task_id: int) -> Task:
        return _task(self._call(f"get task {task_id}",
                                lambda: self._sdk.tasks.get(id=str(task_id))))

    def fetch(self, url: str) -> bytes:
        """The bytes behind a task data URL (e.g. /data/local-files/?d=...), as the UI loads
        them; a 404 here means the file is not below a registered storage of the server's
        LOCAL_FILES_DOCUMENT_ROOT."""
        target = urljoin(self.url + "/", url.lstrip("/")) if url.startswith("/") else url
        response = self._call(f"fetch {url}", lambda: self._http.get(target))
        if response.status_code != 200:
            raise LabelStudioError(f"fetch {url}", response.status_code,
                                   "not served (is LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT the "
                                   "files root, and LOCAL_FILES_SERVING_ENABLED true?)"
                                   if response.status_code == 404 else response.text[:200])
        return response.content

    def image(self, task: Task, field_name: str = "image") -> bytes:
        """The bytes of the task's image, fetched from Label Studio as the UI would."""
        url = task.data.get(field_name)
        if not isinstance(url, str) or not url:
            raise LabelStudioError(f"task {task.id} image", 0, f"no {field_name!r} in its data")
        return self.fetch(url)

    def create_annotation(self, task_id: int, result: list[dict[str, Any]], *,
                          parent_prediction: int | None = None, lead_time_s: float = 0.0,
                          was_cancelled: bool = False) -> int:
        """Submits an annotation as a person in the UI does; returns its id."""
        extra: dict[str, Any] = {}
        if parent_prediction is not None:
            extra["parent_prediction"] = parent_prediction
        created = self._call(f"annotate task {task_id}", lambda: self._sdk.annotations.create(
            id=task_id, result=result, lead_time=lead_time_s, was_cancelled=was_cancelled,
            **extra))
        return int(created.id or 0)

    # -- webhooks ------------------------------------------------------------------------------

    def webhooks(self, project_id: int) -> list[Webhook]:
        hooks = self._call("list webhooks", lambda: self._sdk.webhooks.list(
            project=str(project_id)))
        return [Webhook(int(h.id or 0), str(h.url), tuple(h.actions or ())) for h in hooks
                if h.project == project_id]

    def ensure_webhook(self, project_id: int, url: str, actions: Sequence[str],
                       headers: Mapping[str, str] | None = None) -> Webhook:
        """A webhook of the project to `url` for `actions`, created or updated. Idempotent."""
        hooks = self._call("list webhooks", lambda: self._sdk.webhooks.list(
            project=str(project_id)))
        mine = [int(h.id or 0) for h in hooks if h.url == url and h.project == project_id]
        if mine:
            self._call("update webhook", lambda: self._sdk.webhooks.update(
                id=mine[0], url=url, actions=list(actions),  # type: ignore[arg-type]
                headers=dict(headers or {}), is_active=True, send_payload=True,
                send_for_all_actions=False))
            return Webhook(mine[0], url, tuple(actions))
        created = self._call("create webhook", lambda: self._sdk.webhooks.create(
            url=url, project=project_id, actions=list(actions),  # type: ignore[arg-type]
            headers=dict(headers or {}), send_payload=True, send_for_all_actions=False))
        return Webhook(int(created.id or 0), url, tuple(actions))


def _task_payload(task: NewTask) -> dict[str, Any]:
    payload: dict[str, Any] = {"data": task.data}
    if task.prediction_result is not None:
        prediction: dict[str, Any] = {"model_version": task.model_version,
                                      "result": task.prediction_result}
        if task.score is not None:
            prediction["score"] = task.score
        payload["predictions"] = [prediction]
    return payload


def _task(item: Any) -> Task:
    annotations = tuple(
        Annotation(int(a["id"]), list(a.get("result") or []), bool(a.get("was_cancelled")),
                   bool(a.get("ground_truth")))
        for a in (item.annotations or []))
    predictions = tuple(
        Prediction(int(p.id or 0), str(p.model_version or ""), p.score, list(p.result or []))
        for p in (item.predictions or []))
    return Task(int(item.id or 0), dict(item.data or {}), annotations, predictions)
