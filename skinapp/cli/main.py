"""Command line: `python -m skinapp {train,soup,evaluate,ingest,import,deidentify,predict,db,audit,users,outcomes} …`.
Heavy imports happen inside each command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skinapp.config import WEIGHTS_ENV, weights_dir

_WEIGHTS_HELP = f"weights folder (default: ${WEIGHTS_ENV}, else the checkout's weights/)"


def _train(args: argparse.Namespace) -> int:
    from skinapp.model.preprocess import ANTIALIASED_RESIZE, BICUBIC_RESIZE
    from skinapp.train.loop import TrainConfig, train

    cfg = TrainConfig(
        data=args.data, out=args.out, isic2017=args.isic2017, siim2020=args.siim2020, encoder=args.encoder,
        image_size=args.image_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, folds=tuple(args.folds), n_folds=args.n_folds,
        seed=args.seed, focal_gamma=args.focal_gamma, sampler_power=args.sampler_power, source_power=args.source_power,
        mask_weight=args.mask_weight, triplet_weight=args.triplet_weight, metadata_dropout=args.metadata_dropout,
        colour_constancy=args.colour_constancy, scale=tuple(args.scale), aspect=tuple(args.aspect),
        illuminant=args.illuminant, clahe=args.clahe, select=args.select, patience=args.patience, half=not args.fp32,
        limit=args.limit, steps_per_epoch=args.steps_per_epoch, threads=args.threads,
        resize={"antialiased": ANTIALIASED_RESIZE, "bicubic": BICUBIC_RESIZE}[args.resize],
        degrade_p=args.degrade_p, partial_sampling=args.partial_sampling, partial_share=args.partial_share,
        partial_source_malignant_share=args.partial_source_malignant_share, init_from=args.init_from,
        warmup_steps=args.warmup_steps,
    )
    try:
        card = train(cfg)
    except ValueError as exc:  # a folder of another recipe, folds that do not fit the data
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {len(card.members)} model(s) into {args.out}; evaluate them with: "
          f"python -m skinapp evaluate --weights {args.out} --data {args.data}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    weights = args.weights or weights_dir()
    from skinapp.evaluation.evaluate import evaluate

    metrics = evaluate(weights, args.data, args.out, limit=args.limit, tta=not args.no_tta, update_card=args.update_card,
                       isic2017=args.isic2017, views=args.views, shifted=args.shifted,
                       resolution=args.resolution, reuse_index=not args.rebuild_index, siim2020=args.siim2020)
    for key, m in (("with_metadata", metrics.with_metadata), ("without_metadata", metrics.without_metadata)):
        if m is not None:
            print(f"{key:17s} balanced accuracy {m.balanced_accuracy:.3f}  malignant AUC {m.malignant_auc:.3f}  "
                  f"sensitivity@90%spec {m.sensitivity_at_90_specificity:.3f}  ECE {m.expected_calibration_error:.3f}")
    rule = metrics.decision_rule
    if rule is not None:
        print(f"balanced rule     τ {rule.tau:.2f}: balanced accuracy {rule.balanced_accuracy_balanced_rule:.3f} "
              f"(argmax {rule.balanced_accuracy_argmax:.3f}; cross-fitted {rule.cross_fitting})")
    if metrics.external is not None:
        ext = metrics.external
        print(f"external          ISIC 2017 val: melanoma AUC {ext.melanoma_auc:.3f}  balanced accuracy "
              f"{ext.balanced_accuracy_balanced_rule:.3f} (argmax {ext.balanced_accuracy_argmax:.3f})")
    for name, check in metrics.check_sets.items():
        net, sets = check.safety_net, check.conformal
        caught = "–" if check.errors_caught is None else f"{check.errors_caught:.0%}"
        sensitivity = "–" if net.malignant_sensitivity is None else f"{net.malignant_sensitivity:.0%}"
        coverage, set_size = (sets.coverage, sets.mean_set_size) if sets is not None else (float("nan"), float("nan"))
        print(f"check {name:11s} flagged {check.flagged_share:.0%} catching {caught} of errors; conformal coverage "
              f"{coverage:.0%} (mean set {set_size:.2f}); safety net sensitivity {sensitivity}, marks {net.share_marked:.0%}")
    if metrics.screening is not None:
        s = metrics.screening
        auc = "–" if s.melanoma_auc is None else f"{s.melanoma_auc:.3f}"
        benign = "–" if s.benign_above_net is None else f"{s.benign_above_net:.0%}"
        print(f"screening         SIIM-ISIC 2020, {s.scored_by}: benign at or above the safety net {benign} of "
              f"{s.benign}; melanomas at or above it {s.melanomas_at_or_above_net} of {s.melanomas}; melanoma AUC {auc}")
    if metrics.mask is not None:
        print(f"mask              Jaccard {metrics.mask.jaccard:.3f}  Dice {metrics.mask.dice:.3f}")
    print(f"report: {args.out / 'report.md'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    if args.save_profile is not None and not args.site_adapt:
        print("error: --save-profile keeps the profile --site-adapt makes; give both", file=sys.stderr)
        return 2
    weights = args.weights or weights_dir()
    from skinapp.cli.predict import run_predict

    ray = None
    if args.engine == "ray":
        from skinapp.distributed.ray_predict import RayOptions

        ray = RayOptions(args.address, args.workers, args.gpus_per_worker, args.cpus_per_worker)
    return run_predict(args.paths, args.out, weights=weights, output_format=args.format, masks_dir=args.masks_dir,
                       metadata_csv=args.metadata, tta=not args.no_tta, site_profile=args.site_profile,
                       site_adapt=args.site_adapt, save_profile=args.save_profile, resume=args.resume,
                       progress=True if args.progress else None, ray=ray)


def _ingest(args: argparse.Namespace) -> int:
    from skinapp.cli.ingest import run_ingest

    return run_ingest(args.paths, report_path=args.report, metadata_csv=args.metadata)


def _import(args: argparse.Namespace) -> int:
    """Analyse and store, as the Import page does, in the name of an enabled account."""
    from skinapp.workflow.analysis import AccountRefused, importer

    try:
        chosen = importer(args.database, args.user, args.weights or weights_dir())
    except AccountRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = chosen.run(args.paths, args.metadata, print_progress if args.progress else None)
    print(result.outcome[1] + f" Model {chosen.predictor.model_version}, imported as {chosen.user.label}.")
    for rejected in result.report.rejected:
        print(f"  not imported: {rejected.file}: {rejected.reason}")
    for note in result.report.notes:
        print(f"  note: {note}")
    return 0 if result.case_ids else 1


def print_progress(fraction: float, text: str) -> None:
    print(f"{fraction:4.0%} {text}", file=sys.stderr, flush=True)


def _db_init(args: argparse.Namespace) -> int:
    from skinapp.config import database_url
    from skinapp.store.setup import initialise_url

    done = initialise_url(args.database or database_url(), app_role=args.app_role)
    print("database ready" + (f"; set up: {', '.join(done)}" if done else "; nothing to change"))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from skinapp.store import Store
    from skinapp.store.checkpoints import CheckpointLog

    try:
        checkpoints = CheckpointLog.to_check()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    check = Store.open(args.database).verify_audit(checkpoints)
    print(check.summary())
    return 0 if check.ok else 1


def _audit_checkpoint(args: argparse.Namespace) -> int:
    from skinapp.store import Store
    from skinapp.store.checkpoints import CheckpointLog

    log = CheckpointLog.configured()
    check = Store.open(args.database).verify_audit(CheckpointLog.to_check())
    if not check.ok:  # a damaged trail is not signed as if it were whole
        print(check.summary(), file=sys.stderr)
        return 1
    checkpoint = log.append(check.entries, check.head)
    print(f"checkpoint written to {log.path}: {checkpoint.entries} entries, head {checkpoint.head}")
    return 0


def _users(args: argparse.Namespace) -> int:
    import getpass

    from skinapp.store import Store
    from skinapp.store.accounts import AccountError, Accounts

    accounts = Accounts(Store.open(args.database))
    actor = f"command line ({getpass.getuser()})"

    def new_password() -> str:
        if args.password_file is not None:
            return (args.password_file.read_text().splitlines() or [""])[0]
        if args.password_stdin:
            return sys.stdin.readline().rstrip("\n")
        first = getpass.getpass("Password (at least 12 characters): ")
        if getpass.getpass("Same password again: ") != first:
            raise AccountError("the two passwords differ")
        return first

    try:
        if args.users == "add":
            user = accounts.add(args.username, args.name, new_password(), args.role, actor)
            print(f"added {user.username} ({user.role}); decisions will read “{user.label}”")
        elif args.users in ("disable", "enable"):
            accounts.set_disabled(args.username, args.users == "disable", actor)
            print(f"{args.username} {args.users}d")
        elif args.users == "password":
            accounts.set_password(args.username, new_password(), actor)
            print(f"password of {args.username} changed")
        else:
            for user in accounts.all():
                print(f"{user.username:20s} {user.role:9s} {'disabled' if user.disabled else 'active':9s} {user.display_name}")
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _outcomes_import(args: argparse.Namespace) -> int:
    from skinapp.store import Store
    from skinapp.workflow.outcomes_import import import_outcomes_file

    result = import_outcomes_file(Store.open(args.database), args.csv, args.user)
    if result.refused:
        print(f"refused {len(result.refused)} row(s) of {args.csv}; nothing was imported:")
        for refused in result.refused:
            print(f"  row {refused.row}: {refused.reason}")
        return 1
    print(f"imported {len(result.imported)} outcome(s) from {args.csv}")
    for row in result.imported:
        print(f"  row {row.row}: {row.case_name}: {row.outcome.label}")
    for number, name in result.unchanged:
        print(f"  row {number}: {name}: already recorded, not recorded again")
    return 0


def _deidentify(args: argparse.Namespace) -> int:
    from skinapp.io.deidentify import run_deidentify

    return run_deidentify(args.paths, args.out, metadata_csv=args.metadata, key=args.key,
                          clean_descriptors=not args.keep_descriptors)


def _structures(args: argparse.Namespace) -> int:
    weights = args.weights or weights_dir()
    from skinapp.evaluation.structures import fit_structures

    section = fit_structures(weights, args.isic2017, seeds=range(args.seeds), cache=args.cache)
    print(f"structure heads fitted on {section.images} labelled images; cross-validated ({section.folds} folds, "
          f"{section.seeds} seeds) AUC, baseline beside it:")
    for f in section.figures:
        print(f"  {f.structure:16s} {f.positives:4d} present  AUC {f.auc:.3f} ({f.auc_low:.3f}–{f.auc_high:.3f})  "
              f"baseline {f.baseline_auc:.3f}  ECE {f.ece:.3f}  {'shown' if f.shown else 'NOT shown (below the minimum)'}")
    return 0


def _soup(args: argparse.Namespace) -> int:
    from skinapp.model.card import WeightsError
    from skinapp.train.soup import make_soup

    try:
        card = make_soup(args.ensembles, args.out)
    except (ValueError, WeightsError) as exc:
        print(f"no soup made: {exc}", file=sys.stderr)
        return 2
    print(f"{card.version}: {len(card.members)} members averaged from {len(args.ensembles)} ensembles into {args.out}; "
          "compare it with bench/compare_ensembles.py before it ships")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m skinapp", description="skinapp dermoscopy model tools")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune the lesion model (one member per held-out HAM10000 fold)",
                                description="Trains the members for the folds given with --folds that --out does not "
                                            "hold yet; an interrupted member resumes from its last finished epoch.")
    train.add_argument("--data", type=Path, required=True, help="HAM10000 folder (metadata CSV, images/, masks/)")
    train.add_argument("--isic2017", type=Path, help="ISIC 2017 folder: its `train` split joins the training set "
                                                      "(`val` is never used)")
    train.add_argument("--siim2020", type=Path, help="SIIM-ISIC 2020 JPEG folder: its patients join the folds (by patient); "
                                                      "unbiopsied benign lesions train as the partial label 'benign'")
    train.add_argument("--out", type=Path, required=True, help="folder for weights, model card and logs")
    train.add_argument("--init-from", type=Path, metavar="WEIGHTS",
                       help="fine-tune: each member starts from this ensemble's member of the same fold (its folds "
                            "are kept) instead of ImageNet; use a lower --lr and fewer --epochs")
    train.add_argument("--warmup-steps", type=int, default=200, help="steps of linear learning-rate warm-up")
    train.add_argument("--encoder", default="lite0", choices=["lite0", "lite1", "lite2"])
    train.add_argument("--image-size", type=int, default=160)
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=8e-4)
    train.add_argument("--n-folds", type=int, default=5)
    train.add_argument("--folds", type=int, nargs="+", default=[0], help="validation folds to train a member for")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--focal-gamma", type=float, default=0.0, help="0 = cross-entropy")
    train.add_argument("--sampler-power", type=float, default=1.0, help="0 = natural class mix, 1 = class-balanced")
    train.add_argument("--source-power", type=float, default=0.5,
                       help="within a class, 0 = data sets in their natural mix, 1 = each data set equally")
    train.add_argument("--mask-weight", type=float, default=1.0, help="weight of mask supervision; 0 = unsupervised attention")
    train.add_argument("--triplet-weight", type=float, default=0.1)
    train.add_argument("--metadata-dropout", type=float, default=0.3)
    train.add_argument("--colour-constancy", default="shades_of_gray", choices=["none", "shades_of_gray"])
    train.add_argument("--scale", type=float, nargs=2, default=[0.8, 1.3], help="zoom range of the random crops")
    train.add_argument("--aspect", type=float, nargs=2, default=[0.75, 1.333], help="aspect range of the random crops")
    train.add_argument("--illuminant", type=float, default=0.08, help="σ of the per-channel illuminant jitter")
    train.add_argument("--clahe", type=float, default=0.0, help="probability of CLAHE augmentation")
    train.add_argument("--resize", default="antialiased", choices=["antialiased", "bicubic"],
                       help="how images are brought to the model's size: area-averaged when shrinking, or the 0.2 "
                            "models' bicubic (the card records it; the app reads it from there)")
    train.add_argument("--partial-sampling", choices=["own_class", "with_nevi"], default="own_class",
                       help="with --siim2020: the partial label 'benign' as a class of its own in balanced sampling, "
                            "or drawn within the nevi's share")
    train.add_argument("--partial-share", type=float, metavar="SHARE",
                       help="with --siim2020: the partial label's share of the draws, e.g. 0.07 (default: what "
                            "--partial-sampling gives it)")
    train.add_argument("--partial-source-malignant-share", type=float, metavar="SHARE",
                       help="with --siim2020: the share of the SIIM-ISIC 2020 draws given to its melanomas, e.g. 0.3 "
                            "(default: what balanced sampling gives them)")
    train.add_argument("--degrade-p", type=float, default=0.5,
                       help="share of training views resampled / blurred / sharpened / recompressed first")
    train.add_argument("--select", choices=["last", "best"], default="last",
                       help="keep the last epoch (nothing chosen on the held-out fold) or the best one on it")
    train.add_argument("--patience", type=int, default=3, help="early stopping, with --select best")
    train.add_argument("--fp32", action="store_true", help="store weights in fp32 (default fp16)")
    train.add_argument("--limit", type=int, help="use only the first N images of each data set (smoke runs)")
    train.add_argument("--steps-per-epoch", type=int, help="cap on optimiser steps per epoch (smoke runs)")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score each model on the HAM10000 fold it never trained on")
    evaluate.add_argument("--data", type=Path, required=True, help="HAM10000 folder")
    evaluate.add_argument("--weights", type=Path, help=_WEIGHTS_HELP)
    evaluate.add_argument("--isic2017", type=Path, help="ISIC 2017 folder: its `val` split is scored as the external check")
    evaluate.add_argument("--siim2020", type=Path, help="SIIM-ISIC 2020 JPEG folder: scored as a screening population "
                          "(held-out patients of members trained with it, else every image)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for metrics.json, report.md and plots")
    evaluate.add_argument("--limit", type=int, help="use only the first N images of the data set")
    evaluate.add_argument("--no-tta", action="store_true", help="identity view only")
    evaluate.add_argument("--views", type=int, choices=[4, 8], help="test-time views (default: the card's); "
                                                                   "with --update-card the model ships with this count")
    evaluate.add_argument("--shifted", type=int, default=2000, help="held-out images in the shifted-copy check "
                                                                    "(colour, contrast, blur, JPEG, scale; 0: none)")
    evaluate.add_argument("--resolution", type=int, default=1000, help="held-out images in the resolution check "
                          "(each delivered at 1×, 1.5×, 2×, 3× and 5× its size; 0: none)")
    evaluate.add_argument("--update-card", action="store_true", help="write the metrics into the weights' model card")
    evaluate.add_argument("--rebuild-index", action="store_true",
                          help="build the similar-case index anew even when the stored one is these members' own "
                               "(checked by recomputing a sample); the longest step")
    evaluate.set_defaults(run=_evaluate)

    structures = commands.add_parser(
        "structures", help="fit and measure the dermoscopic-structure heads on the installed members",
        description="Reads the weak structure labels of ISIC 2017 `train`, measures the heads by cross-validation "
                    "against a pooled-feature baseline, and writes the heads and their figures into the weights.")
    structures.add_argument("--isic2017", type=Path, required=True,
                            help="ISIC 2017 folder holding structures_isic2016_weak.csv and images/")
    structures.add_argument("--weights", type=Path, help=_WEIGHTS_HELP)
    structures.add_argument("--seeds", type=int, default=3, help="seeds of the cross-validation split")
    structures.add_argument("--cache", type=Path, help="an .npz to keep the members' features in between runs")
    structures.set_defaults(run=_structures)

    soup = commands.add_parser(
        "soup", help="average ensembles fine-tuned from one start, member by member (a uniform model soup)",
        description="Each member of the new ensemble is the weight-by-weight mean of the ingredients' members of its "
                    "fold. The ingredients must share their folds, their start and their architecture.")
    soup.add_argument("ensembles", nargs="+", type=Path, help="two or more trained ensemble folders")
    soup.add_argument("--out", type=Path, required=True, help="a new, empty folder for the soup")
    soup.set_defaults(run=_soup)

    ingest = commands.add_parser("ingest", help="import images, DICOM files, folders or zip archives and report on them")
    ingest.add_argument("paths", nargs="+", type=Path, help="image or DICOM files, folders (searched recursively), zip archives")
    ingest.add_argument("--metadata", type=Path, help="metadata CSV with age, sex, site and patient per image name")
    ingest.add_argument("--report", type=Path, help="write the import report (cases and rejected files) as JSON here")
    ingest.set_defaults(run=_ingest)

    store_import = commands.add_parser(
        "import", help="import and analyse into the case database, as the app's Import page does",
        description="Reads image or DICOM files, folders and zip archives one at a time, analyses them with the model "
                    "this clinic runs (with its adopted risk levels) and stores them, audited in the name of --user. "
                    "Files that cannot be read are listed with the reason; the rest are imported. Exit 1 when "
                    "nothing was imported.")
    store_import.add_argument("paths", nargs="+", type=Path, help="image or DICOM files, folders, zip archives")
    store_import.add_argument("--user", required=True, help="the account the import is recorded for (user name)")
    store_import.add_argument("--metadata", type=Path, help="metadata CSV with patient, age, sex, site per image name")
    store_import.add_argument("--database", help="database URL (default: SKINAPP_DATABASE_URL, else the app's SQLite file)")
    store_import.add_argument("--weights", type=Path, help=_WEIGHTS_HELP)
    store_import.add_argument("--progress", action="store_true", help="print progress to standard error")
    store_import.set_defaults(run=_import)

    deidentify = commands.add_parser("deidentify", help="write de-identified copies of cases for sharing")
    deidentify.add_argument("paths", nargs="+", type=Path, help="image or DICOM files, folders, zip archives")
    deidentify.add_argument("--out", type=Path, required=True, help="folder for the de-identified copies")
    deidentify.add_argument("--metadata", type=Path, help="metadata CSV giving the patient of each image")
    deidentify.add_argument("--keep-descriptors", action="store_true",
                            help="keep free text the confidentiality table does not name (device names, comments in "
                                 "nested items); by default it is emptied (PS3.15 Clean Descriptors); either way each "
                                 "file's list is in export.json")
    deidentify.add_argument("--key", help="secret that keeps pseudonyms and replaced UIDs the same across exports "
                                          "(default: a fresh random one, so exports cannot be linked)")
    deidentify.set_defaults(run=_deidentify)

    db = commands.add_parser("db", help="set up or upgrade the case database").add_subparsers(dest="db", required=True)
    init = db.add_parser("init", help="create or upgrade the tables and their guards (run as the tables' owner)",
                         description="Creates the tables, adds what newer versions need, installs the guards that make "
                                     "the record append-only and starts the audit chain. On PostgreSQL, run it as the "
                                     "role that owns the tables and name the role the app connects as with --app-role.")
    init.add_argument("--database", help="database URL (default: SKINAPP_DATABASE_URL, else the app's SQLite file)")
    init.add_argument("--app-role", help="PostgreSQL: the role the app connects as; it may read, insert and fill in "
                                         "missing case metadata, nothing else")
    init.set_defaults(run=_db_init)

    audit = commands.add_parser("audit", help="check the audit trail").add_subparsers(dest="audit", required=True)
    verify = audit.add_parser("verify", help="check the hash chain, every decision and outcome against its audit "
                                             "entry, and the chain against the signed checkpoints (exit 1 if anything "
                                             "was altered)")
    verify.add_argument("--database", help="database URL (default: SKINAPP_DATABASE_URL, else the app's SQLite file)")
    verify.set_defaults(run=_audit_verify)
    checkpoint = audit.add_parser(
        "checkpoint", help="append the chain's signed head to the checkpoint file outside the database",
        description="Signs the audit chain's length and last hash with the server's key (SKINAPP_AUDIT_KEY_FILE) and "
                    "appends them to SKINAPP_AUDIT_CHECKPOINTS. From then on `audit verify` detects entries cut off "
                    "the end and a chain recomputed after a change. Run it from cron; the app also writes one.")
    checkpoint.add_argument("--database", help="database URL (default: SKINAPP_DATABASE_URL, else the app's SQLite file)")
    checkpoint.set_defaults(run=_audit_checkpoint)

    users = commands.add_parser("users", help="manage the accounts that sign in to the app").add_subparsers(
        dest="users", required=True)
    database_help = "database URL (default: SKINAPP_DATABASE_URL, else the app's SQLite file)"
    add = users.add_parser("add", help="add an account (the password is asked for)")
    add.add_argument("username", help="sign-in name: lower-case letters, digits, . _ -")
    add.add_argument("--name", required=True, help="the person's name as decisions should show it, e.g. 'Dr A. Meyer'")
    add.add_argument("--role", choices=["reviewer", "admin"], default="reviewer")
    for name, text in (("disable", "stop an account signing in (its open sessions end; its history stays)"),
                       ("enable", "let a disabled account sign in again"), ("password", "set a new password")):
        users.add_parser(name, help=text).add_argument("username")
    users.add_parser("list", help="list the accounts")
    for command in users.choices.values():
        command.add_argument("--database", help=database_help)
        command.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        command.add_argument("--password-file", type=Path, help="read the password from the first line of this file "
                                                                "(scripted set-up; keep the file private)")
        command.set_defaults(run=_users)

    outcomes = commands.add_parser("outcomes", help="what lesions turned out to be").add_subparsers(
        dest="outcomes", required=True)
    outcome_import = outcomes.add_parser(
        "import", help="import a laboratory's CSV of outcomes: all rows or none (exit 1 and each refused row)",
        description="Columns: case (or case_id), kind (histopathology when empty; stable, not excised), diagnosis (a "
                    "code or name of the clinical list; 'other: <name>'), breslow_mm (invasive melanoma), date "
                    "(YYYY-MM-DD or DD.MM.YYYY), lab_reference, note. Every row is checked first; a file with any "
                    "refused row imports nothing.")
    outcome_import.add_argument("csv", type=Path, help="the CSV file")
    outcome_import.add_argument("--user", required=True, help="who enters the outcomes, e.g. 'Dr A. Meyer'")
    outcome_import.add_argument("--database", help=database_help)
    outcome_import.set_defaults(run=_outcomes_import)

    predict = commands.add_parser("predict", help="analyse images, DICOM files or folders")
    predict.add_argument("paths", nargs="+", type=Path, help="image files, DICOM files, or folders (searched recursively)")
    predict.add_argument("--out", type=Path, required=True, help="CSV file to write")
    predict.add_argument("--format", choices=["isic2018", "full"], default="isic2018")
    predict.add_argument("--masks-dir", type=Path, help="write <image>_mask.png (255 = lesion) here")
    predict.add_argument("--metadata", type=Path, help="metadata CSV with age, sex, site and patient per image name")
    predict.add_argument("--weights", type=Path, help=_WEIGHTS_HELP)
    predict.add_argument("--no-tta", action="store_true", help="identity view only (faster, less stable)")
    site = predict.add_mutually_exclusive_group()
    site.add_argument("--site-adapt", action="store_true", help="adapt the model to the inputs' site first (its "
                      "batch-norm statistics re-estimated on the inputs themselves; at least 50 images of one site)")
    site.add_argument("--site-profile", type=Path, help="analyse with a site profile made before (--save-profile)")
    predict.add_argument("--save-profile", type=Path, help="with --site-adapt: keep the site profile in this file")
    predict.add_argument("--resume", action="store_true",
                         help="keep the rows --out already holds (an interrupted run) and analyse only the other inputs")
    predict.add_argument("--engine", choices=["local", "ray"], default="local",
                         help="local: this process; ray: Ray Data, a pool of predictor workers (same rows)")
    predict.add_argument("--address", help="with --engine ray: the Ray cluster (default: a local Ray on 127.0.0.1)")
    predict.add_argument("--workers", type=int, default=1, help="with --engine ray: predictor workers, one ensemble each")
    predict.add_argument("--gpus-per-worker", type=float, default=0.0, help="with --engine ray: GPUs per worker")
    predict.add_argument("--cpus-per-worker", type=int, default=1,
                         help="with --engine ray: CPU cores per worker (its torch threads)")
    predict.add_argument("--progress", action="store_true",
                         help="show a progress bar on standard error even when it is not a terminal")
    predict.set_defaults(run=_predict)
    from skinapp.cli import pacs, serve

    pacs.add_commands(commands, _WEIGHTS_HELP)
    serve.add_commands(commands, _WEIGHTS_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sqlalchemy.exc import SQLAlchemyError

    from skinapp.model.card import WeightsError
    from skinapp.store.limits import InvalidText
    from skinapp.store.setup import StoreSetupError

    try:
        return args.run(args)
    except (WeightsError, OSError, StoreSetupError, InvalidText) as exc:  # a missing file, a folder, a bad name
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:  # statement parameters are hidden by the store's engines
        print(f"error: the database refused: {exc.orig if hasattr(exc, 'orig') else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
