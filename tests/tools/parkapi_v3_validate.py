"""Validate ParkAPI v3 items with the parkapi-sources project's own models (run by the py312 venv, see
scripts/setup.sh): reads `{"items": [...]}` on stdin, prints `{"valid": n, "errors": [{uid, error}]}`.

Each item goes through `CombinedParkingSiteInput` with unknown fields rejected, and so do its nested restrictions
and external identifiers (validataclass rejects unknown fields per dataclass only when told to)."""

import json
import sys

from parkapi_sources.models.parking_site_inputs import CombinedParkingSiteInput, ParkingSiteRestrictionInput
from parkapi_sources.models.shared_inputs import ExternalIdentifierInput
from validataclass.exceptions import ValidationError
from validataclass.validators import DataclassValidator

SITE = DataclassValidator(CombinedParkingSiteInput, reject_unknown_fields=True)
RESTRICTION = DataclassValidator(ParkingSiteRestrictionInput, reject_unknown_fields=True)
IDENTIFIER = DataclassValidator(ExternalIdentifierInput, reject_unknown_fields=True)


def main() -> None:
    body = json.load(sys.stdin)
    valid, errors = 0, []
    for item in body["items"]:
        try:
            SITE.validate(item)
            for r in item.get("restrictions") or []:
                RESTRICTION.validate(r)
            for e in item.get("external_identifiers") or []:
                IDENTIFIER.validate(e)
            valid += 1
        except ValidationError as exc:
            errors.append({"uid": item.get("uid"), "error": str(exc.to_dict())})
    json.dump({"valid": valid, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
