"""A progress bar for management commands, fed by the same `progress(done=, total=, message=)` callback the
services give a job (accounts.jobs.JobProgress), so one service reports to a page or to a terminal."""

import sys

from tqdm import tqdm


class CommandProgress:
    """A tqdm bar on stderr (stdout keeps the command's result for scripts); off with `disable`."""

    def __init__(self, *, desc: str, unit: str, disable: bool = False):
        self.bar = tqdm(total=None, desc=desc, unit=unit, file=sys.stderr, disable=disable, mininterval=0.2, dynamic_ncols=True)

    def __call__(self, *, done: int, total: int | None = None, message: str | None = None, force: bool = False) -> None:
        if total is not None and total != self.bar.total:
            self.bar.total = total
            self.bar.refresh()
        if message:
            self.bar.set_postfix_str(message, refresh=False)
        if done != self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
