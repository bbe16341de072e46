"""Files ghapp hands to users: the deploy workflow template."""

from importlib.resources import files


def deploy_template() -> str:
    """Return the deploy.yml workflow template exactly as shipped."""
    # importlib.resources works from a wheel or zip, not only a checkout; bytes then decode
    # keeps the file exact (no newline translation), since the CLI prints it as is.
    return files(__name__).joinpath("deploy.yml").read_bytes().decode("utf-8")
