"""URLs of the Oscar test shop: the README's ``oscar-urls`` snippet, executed verbatim."""

from tests.readme_snippets import snippet

exec(snippet("oscar-urls"))  # noqa: S102  # nosec B102 # our own README, by design
