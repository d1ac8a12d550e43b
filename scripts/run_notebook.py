#!/usr/bin/env python3
"""Execute a Deno notebook headlessly with the project's kernel, safely.

Usage:
  python3 scripts/run_notebook.py NOTEBOOK.ipynb [--out OUT.ipynb] [--html OUT.html]
      [-p name=value ...] [--params-file params.json] [--timeout SECONDS]
      [--kernel rwkv-deno] [--drain SECONDS] [--quiet]

Why not `jupyter nbconvert --execute`: the Deno kernel sometimes reports `idle` before the
last outputs of a cell reach iopub, and nbconvert then silently drops them. This runner keeps
draining iopub for a short while (``--drain``, default 0.3 s) after each idle message.

Parameters: values given with ``-p name=value`` (parsed as JSON when possible, else taken as a
string) or a JSON object file (``--params-file``) are injected as a code cell of
``const name = value;`` lines right after the cell tagged ``parameters`` (or at the top when
no cell has that tag). Redeclaring a ``const`` in a later cell is allowed in the Deno kernel.

Exit status: 0 when every cell ran without an error output; 1 with the failing cell's index
and error text on stderr otherwise (the executed notebook is still written when --out is
given); 2 for usage errors. Progress (one line per cell) goes to stderr.

Needs the Debian packages python3-nbclient, jupyter-client, python3-ipykernel (and
jupyter-nbconvert for --html); PyPI is not required.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNEL_DIR = REPO / "jupyter"

try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import (
        CellExecutionComplete,
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )
except ImportError as e:  # pragma: no cover - environment check
    sys.stderr.write(
        f"run_notebook: cannot import nbclient/nbformat ({e}).\n"
        "Install them with: apt-get install -y python3-nbclient jupyter-client python3-ipykernel "
        "jupyter-nbconvert\n(and run this script with /usr/bin/python3 if another python3 "
        "comes first on PATH)\n"
    )
    sys.exit(2)


def log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        sys.stderr.write(f"[run_notebook] {msg}\n")
        sys.stderr.flush()


class DrainingClient(NotebookClient):
    """NotebookClient that keeps reading iopub for `drain_seconds` after `idle`."""

    drain_seconds = 0.3

    async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
        await super()._async_poll_output_msg(parent_msg_id, cell, cell_index)
        deadline = time.monotonic() + self.drain_seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                msg = await self.kc.iopub_channel.get_msg(timeout=left)
            except Exception:  # queue.Empty (timeout) or a closed channel
                return
            if msg["parent_header"].get("msg_id") != parent_msg_id:
                continue
            if msg["msg_type"] == "status":
                continue
            try:
                self.process_message(msg, cell, cell_index)
            except CellExecutionComplete:
                pass


def parse_value(text: str):
    """JSON when it parses (numbers, true/false, arrays, quoted strings), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def collect_params(args) -> dict:
    params: dict = {}
    if args.params_file:
        with open(args.params_file, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise SystemExit(f"run_notebook: {args.params_file} must hold a JSON object")
        params.update(data)
    for item in args.param or []:
        if "=" not in item:
            raise SystemExit(f"run_notebook: -p expects name=value, got {item!r}")
        name, value = item.split("=", 1)
        params[name.strip()] = parse_value(value)
    for name in params:
        if not name.isidentifier():
            raise SystemExit(f"run_notebook: parameter name {name!r} is not an identifier")
    return params


def inject_params(nb, params: dict, quiet: bool) -> int:
    """Insert the parameters cell; return its index or -1 when there is nothing to inject."""
    if not params:
        return -1
    lines = [f"const {k} = {json.dumps(v)};" for k, v in params.items()]
    cell = nbformat.v4.new_code_cell(
        "// Injected by scripts/run_notebook.py\n" + "\n".join(lines),
        metadata={"tags": ["injected-parameters"]},
    )
    at = 0
    for i, c in enumerate(nb.cells):
        if "parameters" in c.get("metadata", {}).get("tags", []):
            at = i + 1
            break
    else:
        log("no cell is tagged 'parameters': injecting parameters at the top", quiet)
    nb.cells.insert(at, cell)
    return at


def error_text(cell) -> str | None:
    """The error shown by a cell's outputs (error output or Deno's 'error:' on stderr)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            tb = "\n".join(out.get("traceback", []))
            return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}\n{tb}".strip()
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            text = out.get("text", "")
            if "error:" in text.lower():
                return text.strip()
    return None


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:80]
    return ""


async def run(nb, path: Path, args, injected_at: int) -> int:
    client = DrainingClient(
        nb,
        timeout=args.timeout,
        kernel_name=args.kernel,
        resources={"metadata": {"path": str(path.parent)}},
        allow_errors=True,
        record_timing=True,
    )
    client.drain_seconds = args.drain
    code_total = sum(1 for c in nb.cells if c.cell_type == "code")
    failed = 0
    t_all = time.monotonic()
    async with client.async_setup_kernel():
        log(f"kernel '{args.kernel}' started for {path.name}", args.quiet)
        n = 0
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            n += 1
            orig = index if injected_at < 0 or index < injected_at else index - 1
            label = "injected parameters" if index == injected_at else f"cell {orig}"
            t0 = time.monotonic()
            try:
                await client.async_execute_cell(cell, index, execution_count=n)
            except CellTimeoutError as e:
                log(f"{label} timed out after {args.timeout}s: {first_line(cell.source)}", False)
                cell.outputs.append(
                    nbformat.v4.new_output("error", ename="Timeout", evalue=str(e), traceback=[])
                )
            except DeadKernelError as e:
                cell.outputs.append(
                    nbformat.v4.new_output(
                        "error", ename="DeadKernelError", evalue=f"the kernel died: {e}", traceback=[]
                    )
                )
            except CellExecutionError as e:  # not expected with allow_errors, but be safe
                cell.outputs.append(
                    nbformat.v4.new_output("error", ename="Error", evalue=str(e), traceback=[])
                )
            dt = time.monotonic() - t0
            err = error_text(cell)
            if err is not None:
                sys.stderr.write(
                    f"[run_notebook] ERROR in {label} (code cell {n}/{code_total}) of "
                    f"{path}: {first_line(cell.source)}\n{err}\n"
                )
                failed = orig
                break
            log(f"{label} ok ({n}/{code_total}, {dt:.2f}s)", args.quiet)
        else:
            failed = -1
    log(f"done in {time.monotonic() - t_all:.1f}s", args.quiet)
    return failed


def write_html(nb, out: Path) -> None:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    out.write_text(body, encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--out", type=Path, help="write the executed notebook here")
    ap.add_argument("--html", type=Path, help="also export the executed notebook as HTML")
    ap.add_argument("-p", "--param", action="append", metavar="NAME=VALUE")
    ap.add_argument("--params-file", help="JSON object of parameters")
    ap.add_argument("--timeout", type=int, default=600, help="per-cell timeout, seconds")
    ap.add_argument("--kernel", default="rwkv-deno", help="kernel name (default rwkv-deno)")
    ap.add_argument("--drain", type=float, default=0.3, help="seconds to drain iopub after idle")
    ap.add_argument("--quiet", action="store_true", help="only print errors")
    args = ap.parse_args()

    if not args.notebook.is_file():
        sys.stderr.write(f"run_notebook: no such notebook: {args.notebook}\n")
        return 2
    # The project's kernelspec lives in <repo>/jupyter/kernels/rwkv-deno.
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in [str(KERNEL_DIR), os.environ.get("JUPYTER_PATH", "")] if p
    )
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    nb = nbformat.read(args.notebook, as_version=4)
    injected_at = inject_params(nb, collect_params(args), args.quiet)
    path = args.notebook.resolve()
    failed = asyncio.run(run(nb, path, args, injected_at))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, args.out)
        log(f"wrote {args.out}", args.quiet)
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        write_html(nb, args.html)
        log(f"wrote {args.html}", args.quiet)
    if failed >= 0:
        sys.stderr.write(f"[run_notebook] FAILED: cell {failed} of {args.notebook}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
