"""Live progress of a command: its stages, rows done of those planned, and memory.

Stages report to a :class:`Progress` cheaply: :meth:`~Progress.advance` adds rows
to a counter, :meth:`~Progress.note` keeps the latest event of each kind (an epoch
started, a holdout loss, an L-BFGS pass, a boosting round); neither draws anything.
A display reads the counters a few times a second in its own thread: rich's live
display when stderr is a terminal, one plain line at most every few seconds
otherwise, nothing with ``--quiet`` (:func:`shown`). The memory Monitor hands it
every RSS sample (``leanfit.memory``), so the display shows RSS against the limit.

>>> progress = Progress()
>>> with progress.stage("train") as stage:
...     progress.plan(1_000, passes=2)
...     progress.advance(500)
...     progress.note({"stage": "epoch", "epoch": 1, "holdout_log_loss": 0.5})
...     print(f"{stage.fraction:.0%}", stage.describe())
25% holdout loss 0.50000 after epoch 1
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

Event = dict
PLAIN_EVERY = 5.0  # seconds between plain lines when stderr is not a terminal
REFRESH_PER_SECOND = 4  # rich's live display
YELLOW_AT, RED_AT = 0.75, 0.9  # shares of the memory limit


@dataclass
class Stage:
    """One stage of a command: rows (or rounds) done of ``total`` planned."""

    name: str
    total: float | None = None
    done: float = 0
    unit: str = "rows"
    passes: int = 1
    events: dict[str, Event] = field(default_factory=dict)
    planned: float = field(default_factory=time.perf_counter)  # when done last started at 0
    ended: float | None = None

    @property
    def fraction(self) -> float | None:
        """The share done (None without a plan); 1 once the stage has ended."""
        if self.ended is not None:
            return 1.0
        return None if not self.total else min(self.done / self.total, 1.0)

    def describe(self) -> str:
        """The stage's latest events in words: epoch, holdout loss, L-BFGS pass, round."""
        events, parts = self.events, []
        if "train" in events:
            parts.append(f"epoch {events['train']['epoch']}/{self.passes}")
        if "epoch" in events:
            last = events["epoch"]
            parts.append(f"holdout loss {last['holdout_log_loss']:.5f} after epoch {last['epoch']}")
        if "lbfgs" in events:
            last = events["lbfgs"]
            parts.append(
                f"L-BFGS pass {last['iteration']} (at most {last['max_iter']:,}), "
                f"loss {last['loss']:.6f}"
            )
        if "boost" in events:
            last = events["boost"]
            losses = ", ".join(
                f"{k.replace('_', ' ')} {v:.5f}" for k, v in last.items() if "_" in k
            )
            parts.append(
                f"round {last['round']}/{self.total:,.0f}" + (f", {losses}" if losses else "")
            )
        return "; ".join(parts)


class Progress:
    """What a command has done so far; see the module docstring.

    ``listeners`` are called with every event :meth:`note` receives (library users,
    tests); they run in the thread that reached the event.
    """

    def __init__(self, *listeners: Callable[[Event], None]):
        self.stages: list[Stage] = []
        self.listeners = list(listeners)
        self.rss, self.limit = 0, 0
        self._open: list[Stage] = []
        self._lock = threading.Lock()

    @property
    def current(self) -> Stage | None:
        return self._open[-1] if self._open else None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Stage]:
        """A stage named ``name`` until the block ends (stages may nest)."""
        stage = Stage(name)
        with self._lock:
            self.stages.append(stage)
            self._open.append(stage)
        try:
            yield stage
        finally:
            with self._lock:
                stage.ended = time.perf_counter()
                self._open.remove(stage)

    def plan(self, rows: float | None, *, passes: int = 1, unit: str = "rows") -> None:
        """The current stage will handle ``rows`` per pass, ``passes`` times (rows None:
        not known); what it did so far starts again from zero."""
        stage = self.current
        if stage is not None:
            with self._lock:
                stage.total = None if rows is None else rows * passes
                stage.done, stage.unit, stage.passes = 0, unit, passes
                stage.planned = time.perf_counter()

    def advance(self, rows: float = 1) -> None:
        """``rows`` more done (or rounds, as planned): called per chunk, never per row."""
        stage = self.current
        if stage is not None:
            with self._lock:
                stage.done += rows

    def counted(self, blocks: Iterable[tuple]) -> Iterator[tuple]:
        """``(X, y, w)`` blocks, advancing by each block's rows as it is handed on."""
        for block in blocks:
            self.advance(len(block[1]))
            yield block

    def note(self, event: Event) -> None:
        """Keep ``event`` (``{"stage": kind, ...}``) as the current stage's latest of its
        kind, and pass it to the listeners."""
        stage = self.current
        if stage is not None:
            stage.events[event["stage"]] = event
        for listener in self.listeners:
            listener(event)

    def measure(self, rss: int, limit: int) -> None:
        """The latest RSS sample and the limit (from the memory Monitor)."""
        self.rss, self.limit = rss, limit

    def visible(self) -> list[Stage]:
        """Stages with something to show: a plan or rows done."""
        with self._lock:
            return [s for s in self.stages if s.total or s.done]


def eta(stage: Stage, rate: float) -> float | None:
    """Seconds left at ``rate`` per second, or None when unknown."""
    if stage.ended is not None:
        return 0.0
    if not stage.total or rate <= 0:
        return None
    return max(stage.total - stage.done, 0) / rate


def clock(seconds: float | None) -> str:
    """``h:mm:ss``, or ``-:--:--`` when unknown.

    >>> clock(3725.4), clock(None)
    ('1:02:05', '-:--:--')
    """
    if seconds is None:
        return "-:--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def per_second(rate: float, unit: str) -> str:
    """``312,000 rows/s``; slow rates with two significant digits.

    >>> per_second(312_000.4, "rows"), per_second(0.42, "rounds")
    ('312,000 rows/s', '0.42 rounds/s')
    """
    return f"{rate:,.0f} {unit}/s" if rate >= 10 else f"{rate:.2g} {unit}/s"


def memory_text(rss: int, limit: int) -> str:
    """``612 MB of 1,000 MB (61%)``.

    >>> memory_text(612_000_000, 1_000_000_000)
    'RSS 612 MB of 1,000 MB (61%)'
    """
    return f"RSS {rss / 1e6:,.0f} MB of {limit / 1e6:,.0f} MB ({rss / max(limit, 1):.0%})"


def memory_style(rss: int, limit: int) -> str:
    """The colour of the memory bar: green, yellow from 75% of the limit, red from 90%.

    >>> [memory_style(rss, 100) for rss in (50, 80, 95)]
    ['green', 'yellow', 'red']
    """
    share = rss / max(limit, 1)
    return "red" if share >= RED_AT else "yellow" if share >= YELLOW_AT else "green"


@contextlib.contextmanager
def shown(
    progress: Progress, *, quiet: bool = False, stream=None, every: float = PLAIN_EVERY
) -> Iterator[Callable[[], None]]:
    """Show ``progress`` on ``stream`` (stderr) while the block runs: live when it is a
    terminal, plain lines (at most one each ``every`` seconds) otherwise, nothing when
    ``quiet``. The display is stopped (and its last state drawn) before the block's
    exception goes on; the block gets the display's ``stop`` (it may be called again)."""
    stream = stream or sys.stderr
    if quiet:
        yield lambda: None
        return
    if stream.isatty():
        display = LiveDisplay(progress, stream)
    else:
        display = PlainDisplay(progress, stream, every)
    display.start()
    try:
        yield display.stop
    finally:
        display.stop()


class PlainDisplay:
    """A line on the current stage at most every ``every`` seconds, from a thread of its
    own (nothing in a run shorter than that)."""

    def __init__(self, progress: Progress, stream, every: float = PLAIN_EVERY):
        self.progress, self.stream, self.every = progress, stream, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="leanfit-progress")
        self._last: dict[int, tuple[float, float]] = {}  # stage id -> (time, done) of a line

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            stage = self.progress.current
            if stage is not None and (stage.total or stage.done):
                self.stream.write(self.line(stage) + "\n")
                self.stream.flush()

    def line(self, stage: Stage) -> str:
        now = time.perf_counter()
        then, before = self._last.get(id(stage), (stage.planned, 0))
        if then < stage.planned or before > stage.done:  # planned again since the last line
            then, before = stage.planned, 0
        self._last[id(stage)] = (now, stage.done)
        rate = (stage.done - before) / max(now - then, 1e-9)
        fraction = stage.fraction
        parts = [f"{stage.name}:"]
        if fraction is not None:
            parts.append(f"{fraction:.0%}")
        parts.append(f"{stage.done:,.0f} {stage.unit}, {per_second(rate, stage.unit)},")
        parts.append(f"ETA {clock(eta(stage, rate))};")
        described = stage.describe()
        if described:
            parts.append(described + ";")
        parts.append(memory_text(self.progress.rss, self.progress.limit))
        return " ".join(parts)


class LiveDisplay:
    """rich's live display: a bar per stage (percent, rows, rows/s, elapsed, ETA, the
    latest events) and RSS against the limit as a bar that turns yellow, then red."""

    def __init__(self, progress: Progress, stream):
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self.progress = progress
        console = Console(file=stream, highlight=False)
        self.bars = Bars(
            TextColumn("[bold]{task.description:<9}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[percent]:>4}"),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[events]}"),
            console=console,
            auto_refresh=False,
            speed_estimate_period=10,
        )
        self.memory_bar = Bars(
            TextColumn("[bold]memory   "),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[text]}"),
            console=console,
            auto_refresh=False,
        )
        self._memory = self.memory_bar.add_task("", total=1, text="")
        self._tasks: dict[int, tuple[int, float]] = {}  # stage id -> task id, planned
        self._group = Group(self.bars, self.memory_bar)
        self.live = Live(
            get_renderable=self._render,
            console=console,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def _render(self):
        for stage in self.progress.visible():
            self._update(stage)
        p = self.progress
        if p.limit:
            column = self.memory_bar.columns[1]
            column.complete_style = column.finished_style = memory_style(p.rss, p.limit)
            self.memory_bar.update(
                self._memory,
                total=p.limit,
                completed=min(p.rss, p.limit),
                text=memory_text(p.rss, p.limit),
            )
        return self._group

    def _update(self, stage: Stage) -> None:
        if id(stage) not in self._tasks:
            task_id = self.bars.add_task(
                stage.name, total=None, percent="", count="", speed="", eta="", events=""
            )
            self._tasks[id(stage)] = (task_id, stage.planned)
        task_id, planned = self._tasks[id(stage)]
        if planned != stage.planned:  # planned again: the speed starts over
            self.bars.reset(task_id)
            self._tasks[id(stage)] = (task_id, stage.planned)
        if stage.ended is not None:
            self.bars.update(task_id, total=max(stage.done, 1), completed=max(stage.done, 1))
        else:
            self.bars.update(task_id, total=stage.total, completed=stage.done)
        average = stage.done / max((stage.ended or time.perf_counter()) - stage.planned, 1e-9)
        rate = average if stage.ended is not None else self.bars.tasks[task_id].speed or average
        fraction = stage.fraction
        self.bars.update(
            task_id,
            percent="" if fraction is None else f"{fraction:.0%}",
            count=f"{stage.done:>11,.0f} {stage.unit}",
            speed=f"{per_second(rate, stage.unit):>15}",
            eta=clock(eta(stage, rate)),
            events=stage.describe(),
        )
