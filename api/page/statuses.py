"""What the integrations page says about each status: seed 002's text, in one place.

Every status has a short label and an indicator (a colour and a shape, so it never rests
on colour alone), the description seed 002 gives it, and its next steps. Seed 002's
wording is kept; "reach out to Kombo" reads "reach out to support", and where seed 002
gives no next steps (Authentication Failing, Credentials Invalid, Setup) or the status
needs an operator (Quality Assurance, Deleted) the steps are ours, naming what this
product offers: the page's buttons, the `syncworker` CLI, the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from models.status import Status


@dataclass(frozen=True)
class StatusText:
    """How the page shows one status: label, indicator, description, next steps."""

    label: str
    shape: str  # a CSS shape (page.css `.shape-<shape>`), distinct per status
    tone: str  # a CSS colour family (page.css `.tone-<tone>`)
    description: str
    next_steps: tuple[str, ...] = ()

    @property
    def first_step(self) -> str | None:
        """The one step a list row has room for."""
        return self.next_steps[0] if self.next_steps else None


_READ_ERROR = "Check the logs of the sync (recent sync runs below) to read the error message."
_READ_WARNING = "Check the logs of the sync (recent sync runs below) to read the warning message."
_SUPPORT = "Reach out to support for help with resolving an issue."
_UPDATE_CREDENTIALS = (
    "Update the integration's credentials (`syncworker integrations set-credentials ID "
    "--from-file PATH`, or the API's credentials call): it becomes active again and syncs "
    "at once."
)

STATUS_TEXTS: Final[dict[Status, StatusText]] = {
    Status.ACTIVE: StatusText(
        "Active",
        "circle",
        "green",
        "The integration is running as expected, and data is being synced successfully.",
    ),
    Status.SYNC_FAILING: StatusText(
        "Sync failing",
        "square",
        "red",
        "The last sync was not completed successfully. This can be the result of critical "
        "errors, such as missing data, missing permissions, or the tool's API having downtime.",
        (_READ_ERROR, _SUPPORT),
    ),
    Status.SYNC_WARNINGS: StatusText(
        "Sync has warnings",
        "triangle",
        "amber",
        "The last sync was successful with warnings. This can be the result of smaller "
        "unexpected behavior, such as a specific field not being able to be fetched.",
        (_READ_WARNING, _SUPPORT),
    ),
    Status.QUALITY_ASSURANCE: StatusText(
        "Quality assurance",
        "diamond",
        "purple",
        "If we detect any issues while performing the first sync, the integration status will "
        "automatically be set to quality assurance mode. Our engineering team will be "
        "notified, and we will contact you once we have resolved the issue and re-enabled the "
        "integration.",
        (
            "Read the first sync's errors and warnings in the recent sync runs below.",
            "Once the issue is resolved, press Resolve QA: the integration becomes active and "
            "syncs at once. Syncs stay paused until then.",
        ),
    ),
    Status.AUTH_FAILING: StatusText(
        "Authentication failing",
        "hexagon",
        "orange",
        "The last sync failed because the credentials could no longer authenticate the data "
        "transfer. This can be the result of expired credentials.",
        (
            _UPDATE_CREDENTIALS,
            "Check that the key or token was not revoked and still has the permissions the "
            "sync needs at the provider.",
            "Syncs keep being tried; after three days of failing authentication the "
            "integration becomes Credentials invalid and syncs pause.",
        ),
    ),
    Status.CREDENTIALS_INVALID: StatusText(
        "Credentials invalid",
        "cross",
        "red",
        "The status is moved from authentication failing to credentials invalid if every sync "
        "over the last three days has failed due to authentication. The integration will be "
        "automatically set to pause future syncs until new credentials are provided.",
        (
            "Provide new credentials (`syncworker integrations set-credentials ID --from-file "
            "PATH`, or the API's credentials call): the integration becomes active again and "
            "syncs at once.",
            "Ask the customer to reconnect their account if the old credentials cannot be renewed.",
        ),
    ),
    Status.SETUP: StatusText(
        "Setup",
        "ring",
        "blue",
        "An integration in the setup state has been successfully connected but no filters "
        "have been configured yet.",
        (
            "Configure the integration's filters, the data it should sync (`syncworker "
            "integrations configure-filters ID --filters JSON`, or the API's filters call): "
            "it becomes active and its first sync starts at once.",
        ),
    ),
    Status.INACTIVE: StatusText(
        "Inactive",
        "pause",
        "grey",
        "An inactive integration will no longer automatically sync data. You can set an "
        "integration to active/inactive with the Deactivate and Reactivate buttons of its "
        "page. In your development environment, integrations will be set to inactive if you "
        "did not send an API request to it over the past two weeks. If desired, you can "
        "always reactivate it.",
        ("Reactivate the integration with the Reactivate button of its page.",),
    ),
    Status.DELETED: StatusText(
        "Deleted",
        "dash",
        "dark",
        "You previously deleted the integration. Its credentials were wiped and its pending "
        "syncs dropped; deletion cannot be undone.",
        ("To sync this account again, connect it as a new integration.",),
    ),
}
