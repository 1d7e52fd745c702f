"""A web page for restoring photos: ``python app.py`` serves it on http://127.0.0.1:7860.

Upload photos (whole photos, or aligned faces), choose method, steps, solver, eta, seed and config, and compare
input, result and intermediates. Restoration runs through :mod:`inference.interactive`. Flags: ``--host``,
``--port``, ``--config`` (default configs/sample/dynfacerestore_demo.yaml), ``--device``, ``--opts key=value``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from a research machine

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from inference.args import offered_configs  # noqa: E402
from inference.inputs import InputSkip  # noqa: E402
from inference.interactive import DEFAULT_CONFIG, PhotoReport, Restorer, parse_overrides, skip_message  # noqa: E402
from inference.strip import stack_rows  # noqa: E402
from models.solvers import SOLVERS  # noqa: E402
from sample_config import METHODS, parse_eta  # noqa: E402
from utils.checkpoint import CheckpointError  # noqa: E402
from utils.config import ConfigError  # noqa: E402
from utils.image_file import project_gray  # noqa: E402
from utils.image_io import to_uint8  # noqa: E402

METHOD_LABELS = {"dynfacerestore": "DynFaceRestore", "difface": "DifFace", "rm0": "RM0 (restorer only)"}
CONFIG_SOLVER = "config"  # the solver choice that keeps the sampling config's
SETTING_ERRORS = (ConfigError, CheckpointError, FileNotFoundError, ValueError, RuntimeError)
# small faces (64 px demo models) are shown filling their box, like the 512 px input beside them
CSS = "#input-image img, #result-image img { width: 100%; height: 100%; object-fit: contain; }"
TABLE_HEADERS = [
    "photo",
    "face",
    "method",
    "paste",
    "sigma_hat",
    "level sigmas",
    "start index",
    "start t",
    "NFE",
    "eta",
    "seed",
    "seconds",
]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def photo_view(report: PhotoReport) -> dict:
    """What the page shows for one photo (uint8 images, captions, markdown), kept per visitor (gr.State)."""
    lines = [
        f"**{report.name}** — {METHOD_LABELS[report.method]}"
        + (f", detector {report.detector}, {len(report.faces)} face(s)" if report.detector else "")
    ]
    strips = []  # one intermediates strip per face, stacked top to bottom
    for face in report.faces:
        i = face.info
        start = "no diffusion" if i["start_index"] < 0 else f"start step {i['start_index']} (t = {i['start_t']})"
        sig = (
            ""
            if i["sigma_hat"] is None
            else (
                f", sigma_hat {i['sigma_hat']:.3f}, levels "
                + ", ".join(f"y'{k + 1} s={s:.2f}" for k, (s, _) in enumerate(face.levels))
            )
        )
        lines.append(
            f"- face {face.index}: {paste_summary(i)}{start}, NFE {i['nfe']}, eta {i['eta']:.3f}{sig}, "
            f"{i['seconds']:.2f} s"
        )
        strips.append(face.strip)
    lines += [f"- note: {n}" for n in report.notes]
    return {
        "name": report.name,
        "input": to_uint8(report.input),
        "before": to_uint8(report.before),
        "result": to_uint8(project_gray(report.result) if report.facts.gray else report.result),
        "strips": stack_rows(strips),
        "facts": "\n".join(lines),
    }


def paste_summary(info: dict) -> str:
    """``restored (w_c 0.93, w_h 0.41); `` for a face of a whole photo (its decision and paste weights), ``""``
    for an aligned face."""
    if "decision" not in info:
        return ""
    weights = info["paste_weights"]
    return info["decision"] + ("" if weights is None else " (w_c {:.2f}, w_h {:.2f})".format(*weights)) + "; "


def table_rows(report: PhotoReport) -> List[list]:
    """One row per face: its paste decision (whole photos), the sampler's facts and the seconds it took."""
    return [
        [
            report.name,
            f.index,
            report.method,
            f.info.get("decision", "aligned"),
            _fmt(f.info["sigma_hat"]),
            " ".join(f"{s:.2f}" for s, _ in f.levels) or "-",
            f.info["start_index"],
            f.info["start_t"],
            f.info["nfe"],
            round(f.info["eta"], 3),
            str(f.info["seed"]),
            round(f.info["seconds"], 3),
        ]
        for f in report.faces
    ]


def _show(views: Sequence[dict], name: Optional[str]):
    """The detail components for the photo called ``name`` (the first one when absent)."""
    view = next((v for v in views if v["name"] == name), views[0] if views else None)
    if view is None:
        return None, None, None, None, ""
    return view["input"], view["result"], (view["before"], view["result"]), view["strips"], view["facts"]


class App:
    """The page's callbacks around one :class:`Restorer` (one restore at a time: the queue's default)."""

    def __init__(self, restorer: Restorer, default_config: str = DEFAULT_CONFIG):
        self.restorer = restorer
        self.default_config = default_config
        self.downloads = tempfile.TemporaryDirectory(prefix="dynfacerestore_app_")

    def restore(
        self,
        files,
        aligned: bool,
        method: str,
        eta: str,
        seed,
        upscale,
        config: str,
        steps=0,
        solver: str = CONFIG_SOLVER,
        progress=gr.Progress(),  # noqa: B008 - gradio injects the tracker through this default
    ):
        """Restore every uploaded file; refused files are listed with the command line's message."""
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            raise gr.Error("upload at least one photo")
        eta = (eta or "auto").strip()
        try:
            parse_eta(eta)
        except ConfigError as err:
            raise gr.Error(_first_line(err)) from None
        config = (config or self.default_config).strip()
        reports: List[PhotoReport] = []
        messages: List[str] = []
        for n, path in enumerate(paths):
            name = Path(path).name

            def on_step(face: int, faces: int, nfe: int, n=n, name=name) -> None:
                step = f", step {nfe}" if nfe else ""
                progress(
                    (n * faces + face, len(paths) * faces), desc=f"{name}: face {face + 1}/{faces}{step}", unit="faces"
                )

            progress((n, len(paths)), desc=f"reading {name}", unit="photos")
            try:
                reports.append(
                    self.restorer.restore_file(
                        path,
                        config=config,
                        method=method,
                        eta=eta,
                        seed=int(seed or 0),
                        aligned=bool(aligned),
                        upscale=float(upscale or 1.0),
                        name=name,
                        on_step=on_step,
                        steps=int(steps) if steps else None,
                        solver=None if solver == CONFIG_SOLVER else solver,
                    )
                )
            except InputSkip as err:
                messages.append(skip_message(name, err))
            except SETTING_ERRORS as err:
                raise gr.Error(_first_line(err)) from None
        if not reports:
            raise gr.Error("\n".join(messages))
        out_dir = tempfile.mkdtemp(dir=self.downloads.name)
        downloads = [str(p) for report in reports for p in report.write(out_dir)]
        messages += [f"{r.name}: converted: {'; '.join(r.notes)}" for r in reports if r.notes]
        views = [photo_view(r) for r in reports]
        names = [v["name"] for v in views]
        rows = [row for r in reports for row in table_rows(r)]
        return (
            views,
            gr.Dropdown(choices=names, value=names[0]),
            *_show(views, names[0]),
            rows,
            downloads,
            "\n".join(messages) or "all photos restored",
        )

    @staticmethod
    def show(views, name):
        return _show(views or [], name)


def build_demo(restorer: Restorer, default_config: str = DEFAULT_CONFIG) -> gr.Blocks:
    """The page (gradio Blocks); its restore event is also the API endpoint ``/restore``."""
    app = App(restorer, default_config)
    with gr.Blocks(title="DynFaceRestore", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# DynFaceRestore\nBlind face restoration with a diffusion prior: DynFaceRestore (dynamic "
            "blur-level mapping and guidance), DifFace, or the RM0 restorer alone. Upload photos (each "
            "face is found, restored and pasted back), or tick *aligned faces* for aligned crops."
        )
        views = gr.State([])
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                files = gr.File(label="photos", file_count="multiple", file_types=["image"], elem_id="photos")
                aligned = gr.Checkbox(
                    False,
                    label="aligned faces",
                    info="on: each photo is one face aligned to the FFHQ template; off: whole "
                    "photos (faces are detected, restored and pasted back)",
                )
                method = gr.Dropdown([(METHOD_LABELS[m], m) for m in METHODS], value="dynfacerestore", label="method")
                steps = gr.Number(
                    0,
                    precision=0,
                    minimum=0,
                    label="steps",
                    info="0: the config's; N respaces the schedule as ddimN (250 + ddim: the paper's)",
                )
                solver = gr.Dropdown(
                    [CONFIG_SOLVER, *SOLVERS],
                    value=CONFIG_SOLVER,
                    label="solver",
                    info="ddim, or dpmpp_2m (second-order multistep on the guided x0)",
                )
                eta = gr.Textbox(
                    "auto", label="eta", info="auto (per image sigma/10; DifFace: its fixed eta) or a number in [0, 1]"
                )
                seed = gr.Number(0, precision=0, label="seed", info="each photo uses hash(seed, file name), as the CLI")
                upscale = gr.Number(1.0, minimum=0.25, maximum=8, label="upscale (whole photos)")
                config = gr.Dropdown(
                    offered_configs(), value=default_config, allow_custom_value=True, label="sampling config"
                )
                run = gr.Button("Restore", variant="primary", elem_id="restore-button")
            with gr.Column(scale=3):
                photo = gr.Dropdown([], label="photo", interactive=True, elem_id="photo-choice")
                with gr.Row():
                    shown_input = gr.Image(
                        label="input", format="png", interactive=False, height=320, elem_id="input-image"
                    )
                    shown_result = gr.Image(
                        label="result", format="png", interactive=False, height=320, elem_id="result-image"
                    )
                    slider = gr.ImageSlider(
                        label="before / after", format="png", interactive=False, max_height=320, elem_id="before-after"
                    )
                # the caption sits above the image, not in its label, which would cover the strip's column titles
                gr.Markdown(
                    "**per face**, top to bottom: LQ | blurred levels (sigma) | guidance map | guided x0 at "
                    "timestep t | result"
                )
                # no toolbar: its buttons would cover the last tile's "result" title (the strips are downloads)
                strips = gr.Image(show_label=False, format="png", interactive=False, buttons=[], elem_id="strips")
                facts = gr.Markdown(label="start step, sigmas, timings", elem_id="facts")
        table = gr.Dataframe(
            headers=TABLE_HEADERS, label="per face: sampler facts and timings", interactive=False, elem_id="timings"
        )
        with gr.Row():
            downloads = gr.File(label="download results", file_count="multiple", interactive=False, elem_id="downloads")
            log = gr.Textbox(label="messages", lines=3, interactive=False, elem_id="messages")
        details = [shown_input, shown_result, slider, strips, facts]
        run.click(
            app.restore,
            [files, aligned, method, eta, seed, upscale, config, steps, solver],
            [views, photo, *details, table, downloads, log],
            api_name="restore",
        )
        photo.input(app.show, [views, photo], details, api_name=False)
    return demo


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Web page for restoring photos with DynFaceRestore / DifFace / RM0.")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"default sampling config (default {DEFAULT_CONFIG})")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device (default: cuda when available, else cpu)",
    )
    p.add_argument(
        "--opts",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every sampler, e.g. diffusion.params.timestep_respacing=ddim100",
    )
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    restorer = Restorer(device=args.device, overrides=parse_overrides(args.opts))
    demo = build_demo(restorer, args.config)
    demo.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, show_error=True, css=CSS
    )


if __name__ == "__main__":
    main()
