"""Who is calling: the :class:`Principal` every operation carries."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ADMIN_ROLE", "Principal"]

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a stable user id and the roles granted to it."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        """True when the caller holds the admin role (sees and cancels every task)."""
        return ADMIN_ROLE in self.roles

    def has_role(self, role: str | None) -> bool:
        """True when ``role`` is None (no requirement) or the caller holds it (admins hold all)."""
        return role is None or role in self.roles or self.is_admin
