"""`python -m skinapp pacs pull | push | listen`: the clinic's PACS from the command line (skinapp.pacs)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _server(args: argparse.Namespace):
    from skinapp.pacs.connection import PacsServer, read_password

    password = read_password(args.password_file)
    if args.user and password is None:
        raise _Refused("give the PACS password with --password-file (or SKINAPP_PACS_PASSWORD)")
    return PacsServer(args.url, args.user, password, ca_bundle=args.ca_bundle)


class _Refused(Exception):
    pass


def _importer(args: argparse.Namespace):
    from skinapp.config import weights_dir
    from skinapp.workflow.analysis import importer

    return importer(args.database, args.account, args.weights or weights_dir())


def _progress(fraction: float, text: str) -> None:
    print(f"{fraction:4.0%} {text}", file=sys.stderr, flush=True)


def _pull(args: argparse.Namespace) -> int:
    from skinapp.pacs.exchange import pull_studies
    from skinapp.pacs.pull import StudyQuery, find_studies

    query = StudyQuery(args.patient_id, args.patient_name, args.since, args.until, args.modality)
    if query.empty and not args.all:
        raise _Refused("no search given: name a patient, a date range or a modality, or pull every study with --all")
    server = _server(args)
    chosen = None if args.list else _importer(args)  # the account is checked before the PACS is asked
    client = server.client()
    studies = find_studies(server, query, client)
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on {server.shown} match {query.describe()}.")
    for study in studies:
        print(f"  {study.study_date or 'no date'}  patient {study.patient_id or '?'}  "
              f"{', '.join(study.modalities) or '?'}  {study.images if study.images is not None else '?'} instance(s)  "
              f"{study.description or ''}".rstrip())
    if args.list or not studies:
        return 0 if studies else 1
    assert chosen is not None
    pulled = pull_studies(server, studies, chosen.store, chosen.predictor, chosen.user.label, chosen.assessor,
                          args.modality, progress=_progress if args.progress else None, client=client)
    print(pulled.summary())
    result = pulled.imported
    print(result.outcome[1] + f" Model {chosen.predictor.model_version}, imported as {chosen.user.label}.")
    for rejected in result.report.rejected:
        print(f"  not imported: {rejected.file}: {rejected.reason}")
    for note in result.report.notes:
        print(f"  note: {note}")
    return 0 if result.case_ids or not pulled.fetched else 1


def _push(args: argparse.Namespace) -> int:
    from skinapp.pacs.send import send_result, unsent_cases
    from skinapp.store import Store
    from skinapp.workflow.analysis import account_for_import

    store = Store.open(args.database)
    user = account_for_import(store, args.account)
    server = _server(args)
    if args.case:
        chosen = list(dict.fromkeys(args.case))
    else:
        since = dt.datetime.combine(args.since, dt.time(), dt.UTC) if args.since else None
        chosen = unsent_cases(store, store.decided_since(since))
    if not chosen:
        print("Nothing to send: no decided case is waiting for the PACS.")
        return 0
    client = server.client()
    failed = 0
    for case_id in chosen:
        outcome = send_result(server, store, case_id, user.label, client)
        failed += not outcome.sent
        print(f"  case {outcome.case_name} ({case_id}): {outcome.message}"
              + (f" (SR {outcome.sr_sop_instance_uid})" if outcome.sr_sop_instance_uid else ""))
    print(f"{len(chosen) - failed} result(s) sent, {failed} not sent.")
    return 1 if failed else 0


def _listen(args: argparse.Namespace) -> int:
    from skinapp.pacs.listener import StorageListener

    listener = StorageListener(_importer(args), args.ae_title, set(args.allow), host=args.bind, port=args.port,
                               tell=lambda line: print(f"  {line}", flush=True))
    print(f"Listening as {args.ae_title} on {args.bind}:{listener.port} for {', '.join(sorted(args.allow))}; "
          "Ctrl-C stops.", flush=True)
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        listener.stop()
    return 0


def run(handler):
    """A PACS problem or a refused request is one line on standard error, exit 2."""
    def guarded(args: argparse.Namespace) -> int:
        from skinapp.pacs.connection import PacsError
        from skinapp.workflow.analysis import AccountRefused

        try:
            return handler(args)
        except (PacsError, AccountRefused, _Refused) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return guarded


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the PACS's DICOMweb root, e.g. https://pacs.example/dicom-web")
    parser.add_argument("--user", help="the PACS account (HTTP basic authentication)")
    parser.add_argument("--password-file", type=Path,
                        help="a file whose first line is the PACS password (else SKINAPP_PACS_PASSWORD)")
    parser.add_argument("--ca-bundle", help="CA certificate file to trust for https (default: the system's)")


def _store_arguments(parser: argparse.ArgumentParser, weights_help: str, model: bool = True) -> None:
    parser.add_argument("--account", required=True, help="the skinapp account this is recorded for (user name)")
    parser.add_argument("--database", help="database URL (default: SKINAPP_DATABASE_URL, else the app's SQLite file)")
    if model:
        parser.add_argument("--weights", type=Path, help=weights_help)
        parser.add_argument("--progress", action="store_true", help="print progress to standard error")


def add_commands(commands, weights_help: str) -> None:
    pacs = commands.add_parser("pacs", help="pull studies from the clinic's PACS, send results back, receive images")
    actions = pacs.add_subparsers(dest="pacs_command", required=True)

    pull = actions.add_parser(
        "pull", help="search the PACS (QIDO-RS), fetch the images (WADO-RS), analyse and store them",
        description="Finds the studies that match, fetches their images one at a time and imports them as the "
                    "Import page does (same checks, report and de-duplication; images already in the worklist, by "
                    "SOP Instance UID, are not fetched again). Reports and other non-images stay on the PACS.")
    _connection_arguments(pull)
    pull.add_argument("--patient-id")
    pull.add_argument("--patient-name", help="words of the name, in any order (e.g. 'meyer anna')")
    pull.add_argument("--since", type=_date, help="studies on or after this date (YYYY-MM-DD)")
    pull.add_argument("--until", type=_date, help="studies on or before this date (YYYY-MM-DD)")
    pull.add_argument("--modality", help="only images of this modality, e.g. XC (external camera: dermoscopy)")
    pull.add_argument("--all", action="store_true", help="pull every study (required when no filter is given)")
    pull.add_argument("--list", action="store_true", help="only list the matching studies; import nothing")
    _store_arguments(pull, weights_help)
    pull.set_defaults(run=run(_pull))

    push = actions.add_parser(
        "push", help="send reviewed results to the PACS as DICOM Structured Reports (STOW-RS)",
        description="For each decided case (--case, or those decided since --since whose latest decision was not "
                    "sent yet), stores a TID 1500 Measurement Report in the source image's study: the outline, the "
                    "model's call, probabilities, risk tier, warnings, set of possible diagnoses and measurements, "
                    "the model's identity and the reviewer's decision. Each send is audited. Exit 1 if any failed.")
    _connection_arguments(push)
    push.add_argument("--case", type=int, action="append", help="a case id (repeat for several)")
    push.add_argument("--since", type=_date, help="cases decided on or after this date whose result was not sent")
    _store_arguments(push, weights_help, model=False)
    push.set_defaults(run=run(_push))

    listen = actions.add_parser(
        "listen", help="receive images over DICOM (C-STORE) from a dermatoscope or the PACS and import them",
        description="A DICOM Storage SCP: associations from calling AE titles not given with --allow are refused "
                    "and nothing of theirs is stored; what arrives is checked, analysed and stored as an upload is.")
    listen.add_argument("--port", type=int, default=11112)
    listen.add_argument("--ae-title", default="SKINAPP", help="this listener's AE title")
    listen.add_argument("--allow", nargs="+", required=True, metavar="AE", help="calling AE titles that may send")
    listen.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: this machine only)")
    _store_arguments(listen, weights_help)
    listen.set_defaults(run=run(_listen))
