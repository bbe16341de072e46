"""The simulated GitHub's sign-in state: the user its authorize page signs in, teams, codes and
user tokens (the routes are in ghapp/simulator/oauth.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Grant:
    """A code issued by the authorize page, waiting for its exchange."""

    login: str
    redirect_uri: str
    challenge: str
    method: str
    expires: float


@dataclass
class OAuth:
    """Who the authorize page signs in, the teams (`org/team` -> logins), codes and tokens."""

    login: str | None = None
    teams: dict[str, set[str]] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    # How many codes were exchanged and refused (tests read them).
    exchanges: int = 0
    refusals: int = 0

    def add_member(self, team: str, login: str) -> None:
        """Make `login` an active member of `org/team`."""
        self.teams.setdefault(team.lower(), set()).add(login.lower())

    def remove_member(self, team: str, login: str) -> None:
        """Remove `login` from `org/team`."""
        self.teams.get(team.lower(), set()).discard(login.lower())

    def is_member(self, team: str, login: str) -> bool:
        """Whether `login` belongs to `org/team`."""
        return login.lower() in self.teams.get(team.lower(), set())

    def revoke(self, login: str) -> int:
        """Revoke every token of `login` (GitHub answers 401 afterwards); how many."""
        gone = [t for t, who in self.tokens.items() if who.lower() == login.lower()]
        for token in gone:
            del self.tokens[token]
        return len(gone)
