"""Commands that set an integration up: create, set-credentials, configure-filters.

Secrets only ever arrive from a file or stdin, never as an argument (shell history
keeps arguments), and no error quotes what a credentials or filters file holds. Names,
credentials and filters (by the provider's connector) are checked before anything is
written.
A change that asks for a sync makes the integration due at once, so the next beat
tick dispatches it.
"""

from __future__ import annotations

import json
from typing import Any, Final, NoReturn

import click

from models.errors import InvalidValue
from models.inputs import checked_actor
from models.integrations import NewIntegration
from models.status import EnvironmentKind, Provider, parse_enum
from worker.cli.actions import ACTOR_HELP, JSON_HELP, report
from worker.cli.context import CliContext, emit, failures, pass_context

# Credentials and filters are a few fields; a bigger file is a wrong file.
MAX_JSON_CHARS: Final = 1024 * 1024


def read_json_object(source: str, *, what: str) -> dict[str, Any]:
    """A JSON object from a file path, or stdin for `-`; errors never quote the content.

    Nor the path: a secret pasted where the path belongs must not be echoed back.
    """
    try:
        with click.open_file(source, "r", encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise InvalidValue(f"cannot read the {what} file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidValue(f"the {what} file is not UTF-8 text") from None
    return parse_json_object(text, what=f"the {what} file")


def parse_json_object(text: str, *, what: str) -> dict[str, Any]:
    """A JSON object; a syntax error is reported by position only, never by content.

    Strict JSON: NaN and Infinity (which Python's parser takes by default) are refused, and
    so is nesting deep enough to exhaust the parser.
    """
    if len(text) > MAX_JSON_CHARS:
        raise InvalidValue(f"{what} is larger than {MAX_JSON_CHARS // 1024} KiB")

    def not_json(constant: str) -> NoReturn:
        raise InvalidValue(f"{what} is not valid JSON ({constant} is not a JSON number)")

    def finite(number: str) -> float:
        value = float(number)
        if value in (float("inf"), float("-inf")):
            raise InvalidValue(f"{what} holds a number too large to read")
        return value

    try:
        value = json.loads(text, parse_constant=not_json, parse_float=finite)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidValue(f"{what} is not valid JSON ({exc.msg} at {where})") from None
    except RecursionError:
        raise InvalidValue(f"{what} is nested too deeply to be read") from None
    except InvalidValue:
        raise
    except ValueError:  # an integer too long to convert
        raise InvalidValue(f"{what} holds a number too large to read") from None
    if not isinstance(value, dict):
        raise InvalidValue(f"{what} must hold a JSON object, not {type(value).__name__}")
    return value


def filters_from(inline: str | None, path: str | None) -> dict[str, Any]:
    if (inline is None) == (path is None):
        raise InvalidValue("give the filters as exactly one of --filters or --filters-file")
    if inline is not None:
        return parse_json_object(inline, what="--filters")
    return read_json_object(str(path), what="filters")


@click.command()
@click.option("--environment", "environment_id", required=True, help="Environment id.")
@click.option("--name", required=True, help="Display name.")
@click.option("--identifier", required=True, help="Unique among the environment's live ones.")
@click.option("--provider", required=True, help=f"One of: {', '.join(Provider)}.")
@click.option("--filters", "filters_json", help="Filters as a JSON object (else: setup).")
@click.option("--credentials-file", help="JSON object of credential fields; - for stdin.")
@click.option("--primary", is_flag=True, help="The environment's primary for this provider.")
@click.option(
    "--environment-kind",
    type=click.Choice([k.value for k in EnvironmentKind]),
    help="Kind of a new environment (default production).",
)
@click.option("--organization", help="Organization of a new environment.")
@click.option("--actor", default="operator", show_default=True, help=ACTOR_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def create(
    cli: CliContext,
    *,
    environment_id: str,
    name: str,
    identifier: str,
    provider: str,
    filters_json: str | None,
    credentials_file: str | None,
    primary: bool,
    environment_kind: str | None,
    organization: str | None,
    actor: str,
    as_json: bool,
) -> None:
    """Create an integration: in setup without filters, else active with a sync due.

    A missing environment is created when --organization is given.
    """
    with failures(as_json):
        kind = parse_enum(Provider, provider, what="provider")
        filters = (
            None if filters_json is None else parse_json_object(filters_json, what="--filters")
        )
        credentials = None
        if credentials_file is not None:
            credentials = read_json_object(credentials_file, what="credentials")
        # Refuse bad input before creating anything (a missing environment is made first).
        connector = cli.runtime.connector(kind)
        if credentials is not None:
            connector.validate_credentials(credentials)
        if filters is not None:
            filters = connector.validate_filters(filters)
        NewIntegration(environment_id, name, identifier, kind.value, filters=filters)
        checked_actor(actor)
        cli.operator.ensure_environment(
            environment_id, organization_id=organization, kind=environment_kind
        )
        created = cli.operator.create(
            environment_id=environment_id,
            name=name,
            identifier=identifier,
            provider=kind.value,
            credentials=credentials,
            filters=filters,
            actor=actor,
            primary=primary,
        )
        dto = cli.operator.get(str(created.integration_id), "dto")
    payload = {**created.result.to_dict(), "integration": dto}
    emit(payload, as_json=as_json, human=lambda: created.result.message or "created")


@click.command("set-credentials")
@click.argument("integration_id")
@click.option(
    "--from-file", "source", required=True, help="JSON object of credential fields; - for stdin."
)
@click.option("--actor", default="operator", show_default=True, help=ACTOR_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def set_credentials(
    cli: CliContext, integration_id: str, source: str, actor: str, as_json: bool
) -> None:
    """Replace the credentials; an auth-failing or invalid integration becomes active again.

    The secret is read from a file or stdin, never from the command line.
    """
    with failures(as_json):
        credentials = read_json_object(source, what="credentials")
        result = cli.operator.set_credentials(integration_id, credentials, actor=actor)
    report(result, as_json=as_json)


@click.command("configure-filters")
@click.argument("integration_id")
@click.option("--filters", "inline", help="Filters as a JSON object.")
@click.option("--filters-file", "path", help="A file holding the filters' JSON object.")
@click.option("--actor", default="operator", show_default=True, help=ACTOR_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_context
def configure_filters(
    cli: CliContext,
    *,
    integration_id: str,
    inline: str | None,
    path: str | None,
    actor: str,
    as_json: bool,
) -> None:
    """Set the filters; an integration in setup becomes active with its first sync due."""
    with failures(as_json):
        filters = filters_from(inline, path)
        result = cli.operator.configure_filters(integration_id, filters, actor=actor)
    report(result, as_json=as_json)


COMMANDS = (create, set_credentials, configure_filters)
