"""``lmrec federate``: train federated MF or two-tower in Flower's simulation engine, evaluate it,
save it (a thin wrapper over :class:`lmrec.federated.FedMF` and :class:`~lmrec.federated.FedTwoTower`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lmrec.cli._common import stderr_console, stdout_console, with_errors
from lmrec.errors import LmrecError


def federate_cmd(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset name (built-in or `lmrec datasets add`ed).")
    ] = "ml-100k",
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="federated model: mf (BPR-MF) or two_tower (shared MiniLM text item tower, local user vectors)",
        ),
    ] = "mf",
    fusion: Annotated[
        str,
        typer.Option(
            "--fusion", help="two_tower item tower: sum (projected text + item ID embedding) or text_only"
        ),
    ] = "sum",
    clients: Annotated[int, typer.Option("--clients", "-k", min=1, help="cross-silo clients")] = 10,
    rounds: Annotated[int, typer.Option("--rounds", "-r", min=1, help="federated rounds")] = 40,
    partition: Annotated[
        str,
        typer.Option(
            "--partition",
            help="hash, occupation, zip, user (cross-device: one client per user) or a user-table column",
        ),
    ] = "hash",
    fraction: Annotated[
        float, typer.Option("--fraction", min=0.0, max=1.0, help="share of clients sampled per round")
    ] = 1.0,
    strategy: Annotated[
        str, typer.Option("--strategy", help="fedavg, fedavgm, fedprox or fedadam")
    ] = "fedavg",
    server_lr: Annotated[
        float | None,
        typer.Option("--server-lr", help="server step size (FedAvgM default 1, FedAdam 0.01)"),
    ] = None,
    server_momentum: Annotated[
        float, typer.Option("--server-momentum", min=0.0, max=0.99, help="FedAvgM's server momentum")
    ] = 0.0,
    dp: Annotated[
        str,
        typer.Option(
            "--dp",
            help="record (DP-SGD on clients, Opacus) or client (Flower's central DP; see --dp-clipping)",
        ),
    ] = "record",
    dp_clipping: Annotated[
        str,
        typer.Option(
            "--dp-clipping",
            help="--dp client: clip each update on the server or on the client (the only one with --secagg)",
        ),
    ] = "server",
    dp_epsilon: Annotated[
        float | None, typer.Option("--dp-epsilon", help="target ε over all rounds (turns DP on)")
    ] = None,
    dp_delta: Annotated[
        float | None, typer.Option("--dp-delta", help="δ of the reported ε (default 1 / users)")
    ] = None,
    secagg: Annotated[
        bool,
        typer.Option(
            "--secagg",
            help="secure aggregation (Flower's SecAgg+): the server sees only the sum of the clients' tables",
        ),
    ] = False,
    fold_in_l2: Annotated[
        str,
        typer.Option(
            "--fold-in-l2",
            help="λ of the serving-time fold-in of user vectors: a number, or auto (chosen on validation)",
        ),
    ] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="seeds partitions, initialisation and sampling")] = 42,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="artifact folder (+ federated.png, rounds.json); default artifacts/fed_MODEL"
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option("--data-dir", help="folder holding dataset copies (overrides $LMREC_DATA_HOME)"),
    ] = None,
) -> None:
    """Federated training: user data stays on simulated clients, only the item side travels (item
    factors for mf; the item tower over the public item text for two_tower).

    Leave-last-out split; each round prints the clients' mean loss, their validation NDCG@10, the
    bytes sent and the ε spent so far. The result is a normal lmrec artifact (`lmrec recommend` /
    `serve` fold a user's vector in from their history), with the test NDCG@10 printed at the end
    and a plot of validation NDCG@10 against rounds and against ε written beside it.
    """
    from lmrec.data.split import leave_last_out
    from lmrec.evaluation import evaluate
    from lmrec.experiment import DatasetSpec, load_data, save_catalog

    if model not in ("mf", "two_tower"):
        raise LmrecError(f"--model {model!r}: choose mf (federated BPR-MF) or two_tower")
    if fusion not in ("sum", "text_only"):
        raise LmrecError(f"--fusion {fusion!r}: choose sum or text_only")
    if dp not in ("record", "client"):
        raise LmrecError(f"--dp {dp!r}: choose record or client")
    if dp_clipping not in ("server", "client"):
        raise LmrecError(f"--dp-clipping {dp_clipping!r}: choose server or client")
    if strategy not in ("fedavg", "fedavgm", "fedprox", "fedadam"):
        raise LmrecError(f"--strategy {strategy!r}: choose fedavg, fedavgm, fedprox or fedadam")
    try:
        l2 = None if fold_in_l2.strip().lower() == "auto" else float(fold_in_l2)
    except ValueError:
        raise LmrecError(f"--fold-in-l2 {fold_in_l2!r}: give a number or auto") from None
    try:
        from lmrec.federated import FedMF, FedMFConfig, FedTwoTower, FedTwoTowerConfig
        from lmrec.federated.model import FOLD_IN_GRID
        from lmrec.federated.report import plot_rounds
    except ModuleNotFoundError as exc:
        raise LmrecError(
            f"lmrec federate needs {exc.name}, which is not installed: pip install 'lmrec[federated]'"
        ) from None
    from pydantic import ValidationError

    from lmrec.models.registry import describe_validation_error

    try:
        params: dict[str, object] = {
            "iterations": rounds,
            "clients": clients,
            "partition": partition,
            "fraction": fraction,
            "strategy": strategy,
            "server_learning_rate": server_lr,
            "server_momentum": server_momentum,
            "dp": dp if dp_epsilon is not None else "none",
            "dp_epsilon": dp_epsilon,
            "dp_delta": dp_delta,
            "dp_clipping": dp_clipping,
            "secagg": secagg,
            "seed": seed,
            **({} if l2 is None else {"regularization": l2}),
        }
        config: FedMFConfig
        if model == "two_tower":
            from lmrec.text.cache import default_cache_dir

            # item text vectors through the shared embedding cache, as `lmrec quickstart` does
            config = FedTwoTowerConfig(**params, fusion=fusion, cache_dir=str(default_cache_dir()))  # type: ignore[arg-type]
        else:
            config = FedMFConfig(**params)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise LmrecError(describe_validation_error(exc)) from None
    out = Path(f"artifacts/fed_{model}") if out is None else out
    console, err = stdout_console(), stderr_console()
    with err.status(f"loading {dataset}"):
        data = load_data(DatasetSpec(name=dataset, data_dir=data_dir))
        sp = leave_last_out(data)
    n = sp.train.n_users if partition == "user" else clients
    secure = ", SecAgg+" if secagg else ""
    console.print(escape(f"{data!r}: {n} clients ({partition}), {rounds} rounds, {strategy}{secure}"))

    def show(r: object) -> None:
        from lmrec.federated import RoundLog

        assert isinstance(r, RoundLog)
        ndcg = "-" if r.valid_ndcg is None else f"{r.valid_ndcg:.4f}"
        eps = "" if r.epsilon is None else f"  ε {r.epsilon:.2f}"
        console.print(
            f"round {r.round:3d}  clients {r.clients:4d}  loss {r.loss:.4f}  valid NDCG@10 {ndcg}  "
            f"sent {r.bytes_down / 1e6:.2f} MB  received {r.bytes_up / 1e6:.2f} MB{eps}"
        )

    started = time.perf_counter()
    estimator = FedTwoTower(config) if isinstance(config, FedTwoTowerConfig) else FedMF(config)
    fitted = estimator.fit(sp.train, valid=sp.valid, on_round=show)
    seconds = time.perf_counter() - started
    with err.status("evaluating (user vectors folded in from history)"):
        # a given λ is a grid of one: its validation score is the search's own, as for auto
        scores = fitted.choose_fold_in(sp, FOLD_IN_GRID if l2 is None else (l2,))
        valid_ndcg = scores[fitted.config.regularization]
        if l2 is None:
            tried = ", ".join(f"{lam:g}: {v:.4f}" for lam, v in scores.items())
            console.print(f"fold-in λ {fitted.config.regularization:g} (validation NDCG@10 {tried})")
        test = evaluate(fitted, sp, ks=(10,), phase="test", beyond_accuracy=False, auc=False)
    fitted.save(out)
    save_catalog(data, out)
    (out / "rounds.json").write_text(json.dumps([r.__dict__ for r in fitted.run_.rounds], indent=1))
    plot = plot_rounds({f"{fitted.name} ({partition})": fitted.run_.rounds}, out / "federated.png")
    eps = fitted.run_.epsilon
    privacy = "no DP" if eps is None else f"ε {eps:.2f} at δ {fitted.run_.delta:.2g}"
    console.print(
        escape(
            f"NDCG@10 (fold-in): valid {valid_ndcg:.4f}, test {test.metrics['ndcg@10']:.4f}; "
            f"{privacy}; fit {seconds:.0f} s; saved to {out}, plot {plot}"
        )
    )


def register(app: typer.Typer) -> None:
    app.command("federate")(with_errors(federate_cmd))


__all__ = ["federate_cmd", "register"]
