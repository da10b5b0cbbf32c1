"""What every section of the config file shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # forbid: a misspelt key must fail loudly instead of silently falling back to a default.
    # frozen: the config is read once at startup and shared by every request.
    model_config = ConfigDict(extra="forbid", frozen=True)
