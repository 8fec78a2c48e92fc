"""``pcq dead``: the dead-letter inbox -- ``list``, ``show``, ``requeue``, ``purge``.

The workflow (docs/dead-letters.md): ``list`` what died and why (newest first),
``show`` one record whole, fix the cause, then ``requeue`` the items (each goes
back to the queue as a new delivery of the same id, and its run's tally counts
it once consumed) or ``purge`` them. Each command first applies the retention
caps (``PCQ_DEAD_MAX``, ``PCQ_DEAD_MAX_AGE``) and says when that trimmed records.

Records are named by a dead-letter id, the first 12 hex digits of the SHA-1 of
the stored record (:mod:`pcq.core.redis_list.dead_letters`); an item id
(``<run>:<n>``) names that item's newest record.

Payloads are hostile until shown otherwise: every text that comes from Redis is
printed through :func:`safe` (control and format characters escaped, so no
terminal escape sequence or bidi override reaches the terminal; cut to a
length) and as Rich ``Text`` (never read as markup). ``--json`` output is
ASCII-escaped JSON. In compose these commands run as the ``operator`` ACL user.
"""

from __future__ import annotations

import json
import re
import sys
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console as RichConsole
from rich.table import Table
from rich.text import Text

from pcq.core.cli.options import QueueOption, RedisUrlOption
from pcq.core.errors import PcqError, UsageProblem
from pcq.core.redis_common.settings import RedisSettings

if TYPE_CHECKING:
    import redis

    from pcq.core.redis_common.keys import Keys
    from pcq.core.redis_list.dead_records import DeadLetter, Selection

__all__ = ["dead_app", "parse_age", "register", "safe"]

dead_app = typer.Typer(
    name="dead",
    help="Dead letters of the Redis list: list, show, requeue, purge (as the operator user).",
    no_args_is_help=True,
    add_completion=False,
)

_AGE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d|w)?\s*$")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, format (bidi), unassigned...


def parse_age(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"``."""
    match = _AGE_RE.match(text)
    if not match:
        raise UsageProblem(f"--older-than {text!r}: an age is a number with s, m, h, d or w")
    return float(match.group(1)) * _AGE_UNITS[match.group(2) or "s"]


def safe(text: str, limit: int | None = 200) -> str:
    """``text`` with every character a terminal could act on escaped, cut to ``limit``."""
    cut = text if limit is None else text[:limit]
    out = []
    for ch in cut:
        if unicodedata.category(ch) in _UNSAFE:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")  # fmt: skip
        else:
            out.append(ch)
    if limit is not None and len(text) > limit:
        out.append(f"... ({len(text) - limit} more characters)")
    return "".join(out)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


# Options shared by the commands, one alias each.
Run = Annotated[str | None, typer.Option("--run", help="Only records of this run id.")]
Reason = Annotated[
    str | None, typer.Option("--reason", help="Only records whose reason contains TEXT (any case).")
]
OlderThan = Annotated[
    str | None, typer.Option("--older-than", help="Only records at least AGE old: 90s, 15m, 2h, 7d.")
]
Everything = Annotated[bool, typer.Option("--all", help="Every record (no ids, no filters).")]
Names = Annotated[
    list[str] | None,
    typer.Argument(help="Dead-letter ids (from `pcq dead list`, or 6+ leading hex digits) or "
                   "item ids <run>:<n>.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON on stdout (ASCII-escaped).")]


def _selection(names: list[str] | None, run: str | None, reason: str | None,
               older_than: str | None, everything: bool) -> Selection:  # fmt: skip
    from pcq.core.redis_list.dead_records import Selection

    age = None if older_than is None else parse_age(older_than)
    return Selection(tuple(names or ()), run, reason, age, everything)


def _required(names: list[str] | None, run: str | None, reason: str | None,
              older_than: str | None, everything: bool) -> Selection:  # fmt: skip
    """A selection that names something: requeue and purge never act on nothing said."""
    chosen = _selection(names, run, reason, older_than, everything)
    if chosen.empty:
        raise UsageProblem("say which dead letters: ID..., --run/--reason/--older-than, or --all")
    return chosen


@contextmanager
def _session(
    queue: str | None, redis_url: str | None
) -> Iterator[tuple[RedisSettings, redis.Redis, Keys]]:
    """Settings, a client and the keys; retention applied first; Redis errors as one line."""
    import redis

    from pcq.core.redis_common.connection import connect, explain, stderr_log
    from pcq.core.redis_common.keys import Keys
    from pcq.core.redis_list.dead_letters import retain
    from pcq.core.redis_list.scripts import Scripts

    settings = RedisSettings.from_env().with_overrides(url=redis_url, queue=queue)
    client, keys = connect(settings), Keys(settings.queue)
    try:
        trimmed = retain(Scripts(client), keys, settings, time.time())
        if trimmed:
            stderr_log(f"pcq: retention trimmed {trimmed} old dead letter(s) (PCQ_DEAD_MAX "
                       f"{settings.dead_max}, PCQ_DEAD_MAX_AGE {settings.dead_max_age}s)")
        yield settings, client, keys
    except redis.RedisError as exc:
        raise explain(exc, settings) from None
    finally:
        client.close()


def _stats(client: redis.Redis, keys: Keys) -> dict[str, int]:
    from pcq.core.redis_common.connection import text

    raw = client.hgetall(keys.stats)
    names = ("dead_letters", "dead_trimmed", "dead_purged", "requeued")
    got = {text(k): int(v) for k, v in raw.items()}
    return {name: got.get(name, 0) for name in names}


@dead_app.command("list")
def list_(
    queue: QueueOption = None,
    redis_url: RedisUrlOption = None,
    run: Run = None,
    reason: Reason = None,
    older_than: OlderThan = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Show at most N (0: all).")] = 50,
    as_json: AsJson = False,
) -> None:
    """List dead letters, newest first: id, age, item, deliveries, consumer, size, reason."""
    chosen = _selection(None, run, reason, older_than, False)
    from pcq.core.redis_list.dead_letters import newest

    now = time.time()
    with _session(queue, redis_url) as (settings, client, keys):
        total, stats = int(client.llen(keys.dead)), _stats(client, keys)
        shown: list[DeadLetter] = []
        for letter in newest(client, keys):
            if chosen.matches(letter, now):
                shown.append(letter)
                if limit and len(shown) >= limit:
                    break
    if as_json:
        out = {"queue": settings.queue, "total": total, "shown": len(shown), "stats": stats,
               "letters": [d.summary(now) for d in shown]}  # fmt: skip
        sys.stdout.write(json.dumps(out) + "\n")
        return
    _render_list(settings.queue, total, stats, shown, now, chosen.filtered or bool(limit))


def _render_list(queue: str, total: int, stats: dict[str, int], shown: list[DeadLetter],
                 now: float, partial: bool) -> None:  # fmt: skip
    title = f"dead letters on queue {safe(queue)}: {total}" + (f", {len(shown)} shown" if partial else "")
    table = Table(title=title, title_justify="left", caption_justify="left", caption=(
        f"ever dead-lettered {stats['dead_letters']}, requeued {stats['requeued']}, purged "
        f"{stats['dead_purged']}, trimmed by retention {stats['dead_trimmed']}"))  # fmt: skip
    for name in ("id", "age", "item", "deliveries", "consumer", "bytes", "reason"):
        table.add_column(name, justify="right" if name in ("age", "deliveries", "bytes") else "left",
                         overflow="fold", no_wrap=name in ("id", "age", "item", "deliveries", "bytes"),
                         ratio=3 if name == "reason" else None)  # fmt: skip
    for d in shown:
        summary = d.summary(now)
        table.add_row(
            d.dlid, _age(summary["age"]), Text(safe(d.item_id or "-", 80)),
            "-" if d.deliveries is None else str(d.deliveries), Text(safe(d.consumer or "-", 60)),
            f"{d.payload_size:,}" + ("+" if d.truncated else ""), Text(safe(d.reason, 120)),
        )  # fmt: skip
    RichConsole(highlight=False).print(table)


@dead_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Dead-letter id (or 6+ hex digits) or item id.")],
    queue: QueueOption = None,
    redis_url: RedisUrlOption = None,
    max_chars: Annotated[
        int, typer.Option("--max-chars", min=1, help="Cut the payload after N characters.")
    ] = 4000,
    full: Annotated[bool, typer.Option("--full", help="The whole payload, uncut.")] = False,
    as_json: AsJson = False,
) -> None:
    """Show one dead letter whole; the payload escaped (hostile payloads are common) and cut."""
    from pcq.core.redis_list.dead_letters import find

    with _session(queue, redis_url) as (_settings, client, keys):
        letter = find(client, keys, name)
    if letter.record is None:
        preview = safe(letter.raw[:80].decode("utf-8", "backslashreplace"), 80)
        raise PcqError(f"dead letter {letter.dlid} is corrupt ({safe(letter.problem, 120)}); "
                       f"it starts {preview!r}; `pcq dead purge {letter.dlid}` removes it")
    if as_json:
        sys.stdout.write(json.dumps({"dlid": letter.dlid, **letter.record}) + "\n")
        return
    _render_one(letter, None if full else max_chars)


def _render_one(letter: DeadLetter, limit: int | None) -> None:
    table = Table(title=f"dead letter {letter.dlid}", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    at = letter.at
    when = "?" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    rows: list[tuple[str, Any]] = [
        ("item", letter.item_id or "-"), ("run", letter.run or "-"), ("reason", letter.reason),
        ("consumer", letter.consumer or "-"), ("at", f"{when} ({_age(None if at is None else time.time() - at)} ago)"),
        ("deliveries", letter.deliveries), ("payload bytes", letter.payload_size),
    ]  # fmt: skip
    if letter.truncated:
        rows.append(("truncated", f"yes, sha256 {letter.record and letter.record.get('payload_sha256')}"))
    known = {"id", "run", "reason", "consumer", "at", "deliveries", "payload", "payload_b64",
             "truncated", "payload_bytes", "payload_sha256"}  # fmt: skip
    rows += [(k, json.dumps(v)) for k, v in (letter.record or {}).items() if k not in known]
    for key, value in rows:
        table.add_row(Text(safe(str(key), 40)), Text(safe(str(value), 500)))
    payload = letter.payload()
    shown = "-" if payload is None else payload.decode("utf-8", "backslashreplace")
    console = RichConsole(highlight=False)
    console.print(table)
    encoding = "base64-decoded, " if letter.record and "payload_b64" in letter.record else ""
    console.print(Text(f"payload ({encoding}control characters escaped):"))
    console.print(Text(safe(shown, limit)), soft_wrap=True)  # copyable: no hard line breaks


@dead_app.command("requeue")
def requeue(
    names: Names = None,
    queue: QueueOption = None,
    redis_url: RedisUrlOption = None,
    run: Run = None,
    reason: Reason = None,
    older_than: OlderThan = None,
    everything: Everything = False,
    as_json: AsJson = False,
) -> None:
    """Put dead letters back in the queue, oldest first, each as a new delivery of its id.

    The run's tally counts a requeued item as in flight until a consumer acknowledges
    it, then as consumed, once. Exit 1 if any selected record could not be requeued.
    """
    chosen = _required(names, run, reason, older_than, everything)
    from pcq.core.redis_list.dead_letters import requeue as requeue_one
    from pcq.core.redis_list.dead_letters import select

    with _session(queue, redis_url) as (settings, client, keys):
        letters = select(client, keys, chosen, time.time())
        results = [(d, requeue_one(client, keys, settings, d)) for d in letters]
    done = sum(1 for _, outcome in results if outcome == "requeued")
    if as_json:
        rows = [{"dlid": d.dlid, "id": d.item_id, "outcome": o} for d, o in results]
        sys.stdout.write(json.dumps({"requeued": done, "selected": len(results), "letters": rows}) + "\n")
    else:
        for d, outcome in results:
            what = f"{d.dlid} (item {safe(d.item_id or '-', 80)})"
            print(f"requeued {what}" if outcome == "requeued" else f"not requeued {what}: {safe(outcome)}")
        print(f"requeued {done} of {len(results)} dead letter(s) on queue {settings.queue}")
    if done < len(results):
        raise typer.Exit(1)


@dead_app.command("purge")
def purge(
    names: Names = None,
    queue: QueueOption = None,
    redis_url: RedisUrlOption = None,
    run: Run = None,
    reason: Reason = None,
    older_than: OlderThan = None,
    everything: Everything = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete dead letters for good (asks first unless --yes). Runs' tallies keep counting them."""
    chosen = _required(names, run, reason, older_than, everything)
    from pcq.core.redis_list.dead_letters import purge as purge_all
    from pcq.core.redis_list.dead_letters import select

    with _session(queue, redis_url) as (settings, client, keys):
        letters = select(client, keys, chosen, time.time())
        if not letters:
            print(f"no dead letter to purge on queue {settings.queue}")
            return
        if not yes:
            _confirm(f"purge {len(letters)} dead letter(s) from queue {settings.queue}?")
        removed = purge_all(client, keys, letters)
    print(f"purged {removed} dead letter(s) from queue {settings.queue}"
          + (f" ({len(letters) - removed} already gone)" if removed < len(letters) else ""))


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise UsageProblem(f"{question} Refusing without --yes: no terminal to ask on")
    if not typer.confirm(question, default=False):
        print("nothing purged")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``pcq dead`` (list, show, requeue, purge) to the CLI."""
    app.add_typer(dead_app, name="dead")
