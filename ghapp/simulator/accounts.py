"""Builders of GitHub's account-like shapes: users, organizations, repositories, Apps."""

from __future__ import annotations

import base64
from typing import Any

from ghapp.simulator.clock import iso_z
from ghapp.simulator.state import Installation, Repository, World

Json = dict[str, Any]
ACTIONS_BOT = "github-actions[bot]"
ACTIONS_APP_ID = 15368


def node_id(prefix: str, number: int) -> str:
    """A node id in GitHub's new format (``WFR_kwLO...``)."""
    raw = base64.b64encode(number.to_bytes(8, "big")).decode().rstrip("=")
    return f"{prefix}_kwDO{raw}"


def user(world: World, login: str, kind: str = "User") -> Json:
    """A simple-user (also used for organizations and bots as accounts)."""
    api = world.api_url
    uid = world.account_id(login)
    return {
        "login": login,
        "id": uid,
        "node_id": node_id({"Bot": "BOT", "Organization": "O"}.get(kind, "U"), uid),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": f"{api}/users/{login}",
        "html_url": f"{world.web_url}/{login}",
        "followers_url": f"{api}/users/{login}/followers",
        "following_url": f"{api}/users/{login}/following{{/other_user}}",
        "gists_url": f"{api}/users/{login}/gists{{/gist_id}}",
        "starred_url": f"{api}/users/{login}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/users/{login}/subscriptions",
        "organizations_url": f"{api}/users/{login}/orgs",
        "repos_url": f"{api}/users/{login}/repos",
        "events_url": f"{api}/users/{login}/events{{/privacy}}",
        "received_events_url": f"{api}/users/{login}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def app_bot(world: World) -> Json:
    """The App's bot user: the actor of the runs it dispatches."""
    return user(world, f"{world.app_slug}[bot]", "Bot")


def organization(world: World, login: str) -> Json:
    """organization-simple as webhooks carry it."""
    api = world.api_url
    uid = world.account_id(login)
    return {
        "login": login,
        "id": uid,
        "node_id": node_id("O", uid),
        "url": f"{api}/orgs/{login}",
        "repos_url": f"{api}/orgs/{login}/repos",
        "events_url": f"{api}/orgs/{login}/events",
        "hooks_url": f"{api}/orgs/{login}/hooks",
        "issues_url": f"{api}/orgs/{login}/issues",
        "members_url": f"{api}/orgs/{login}/members{{/member}}",
        "public_members_url": f"{api}/orgs/{login}/public_members{{/member}}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "description": "",
    }


def repository(world: World, repo: Repository) -> Json:
    """A repository with every field of the webhook and REST (minimal-repository) shapes."""
    api = f"{world.api_url}/repos/{repo.full_name}"
    html = f"{world.web_url}/{repo.full_name}"
    created = iso_z(repo.created)
    return {
        "id": repo.id,
        "node_id": node_id("R", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.private,
        "owner": user(world, repo.owner, "Organization"),
        "html_url": html,
        "description": None,
        "fork": False,
        "url": api,
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{api}/assignees{{/user}}",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "branches_url": f"{api}/branches{{/branch}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "comments_url": f"{api}/comments{{/number}}",
        "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "contributors_url": f"{api}/contributors",
        "deployments_url": f"{api}/deployments",
        "downloads_url": f"{api}/downloads",
        "events_url": f"{api}/events",
        "forks_url": f"{api}/forks",
        "git_commits_url": f"{api}/git/commits{{/sha}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}",
        "git_url": f"git://github.com/{repo.full_name}.git",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "issues_url": f"{api}/issues{{/number}}",
        "keys_url": f"{api}/keys{{/key_id}}",
        "labels_url": f"{api}/labels{{/name}}",
        "languages_url": f"{api}/languages",
        "merges_url": f"{api}/merges",
        "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "releases_url": f"{api}/releases{{/id}}",
        "ssh_url": f"git@github.com:{repo.full_name}.git",
        "stargazers_url": f"{api}/stargazers",
        "statuses_url": f"{api}/statuses/{{sha}}",
        "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription",
        "tags_url": f"{api}/tags",
        "teams_url": f"{api}/teams",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "clone_url": f"{html}.git",
        "mirror_url": None,
        "hooks_url": f"{api}/hooks",
        "svn_url": html,
        "homepage": None,
        "language": "Python",
        "forks_count": 0,
        "forks": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "watchers": 0,
        "size": 120,
        "default_branch": repo.default_branch,
        "open_issues_count": 0,
        "open_issues": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": True,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private" if repo.private else "public",
        "pushed_at": created,
        "created_at": created,
        "updated_at": created,
        "license": None,
        "allow_forking": True,
        "web_commit_signoff_required": False,
        "custom_properties": {},
    }


def full_repository(world: World, repo: Repository) -> Json:
    """``GET /repos/{o}/{r}``: the repository plus what the App may do there."""
    data = repository(world, repo)
    data["permissions"] = {"admin": False, "maintain": False, "push": False, "triage": False,
                           "pull": True}
    data["organization"] = user(world, repo.owner, "Organization")
    data["network_count"] = 0
    data["subscribers_count"] = 0
    return data


def actions_app(world: World) -> Json:
    """GitHub Actions' own App, which creates deployments for jobs with an environment."""
    created = "2018-07-30T09:30:17Z"
    return {
        "id": ACTIONS_APP_ID,
        "slug": "github-actions",
        "node_id": "MDM6QXBwMTUzNjg=",
        "client_id": "Iv1.05c79e9ad1f6bdfa",
        "owner": user(world, "github", "Organization"),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": f"{world.web_url}/apps/github-actions",
        "created_at": created,
        "updated_at": "2024-04-10T20:33:16Z",
        "permissions": {"actions": "write", "deployments": "write", "metadata": "read"},
        "events": ["deployment", "workflow_run"],
    }


def installation(world: World, inst: Installation) -> Json:
    """An installation of the App."""
    created = iso_z(inst.created)
    return {
        "id": inst.id,
        "client_id": world.client_id,
        "account": user(world, inst.account, "Organization"),
        "repository_selection": "all",
        "access_tokens_url": f"{world.api_url}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{world.api_url}/installation/repositories",
        "html_url": (f"{world.web_url}/organizations/{inst.account}/settings/installations/"
                     f"{inst.id}"),
        "app_id": world.app_id,
        "app_slug": world.app_slug,
        "target_id": world.account_id(inst.account),
        "target_type": "Organization",
        "permissions": dict(inst.permissions),
        "events": list(inst.events),
        "created_at": created,
        "updated_at": created,
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


def integration(world: World, permissions: dict[str, str], events: list[str]) -> Json:
    """The App itself (``GET /app``)."""
    created = iso_z(world.created)
    return {
        "id": world.app_id,
        "slug": world.app_slug,
        "node_id": node_id("A", world.app_id),
        "client_id": world.client_id,
        "owner": user(world, "ghapp-owner", "Organization"),
        "name": world.app_name,
        "description": "Deploys on request",
        "external_url": "https://ghapp.example.com",
        "html_url": f"{world.web_url}/apps/{world.app_slug}",
        "created_at": created,
        "updated_at": created,
        "permissions": dict(permissions),
        "events": list(events),
        "installations_count": len(world.installations),
    }
