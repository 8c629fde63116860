"""Hugging Face Hub access shared by the data and model downloads: a configured revision (branch,
conversion branch, pull-request ref or sha) is resolved to its commit sha before anything loads,
so a download reads one commit and its manifest can say which.

``HF_ENDPOINT`` points the libraries at another Hub (the tests' local one,
``bonito_repro.localhub``); ``HF_TOKEN`` opens gated repositories and is never logged.
"""
from __future__ import annotations


class HubError(RuntimeError):
    """A repository or revision cannot be reached, with what to do about it."""


def resolve_revision(repo_id: str, revision: str, repo_type: str) -> str:
    """The commit sha that ``revision`` of a model or dataset repository points at now."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (GatedRepoError, HFValidationError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    where = f"{repo_type} {repo_id}@{revision}"
    try:
        info = HfApi().repo_info(repo_id, revision=revision, repo_type=repo_type)
    except RevisionNotFoundError:
        raise HubError(f"{where}: no such revision on the Hub") from None
    except GatedRepoError:
        raise HubError(f"{where}: gated repository; set HF_TOKEN to a token with access") from None
    except RepositoryNotFoundError:
        raise HubError(f"{where}: repository not found (private or gated? set HF_TOKEN)") from None
    except HFValidationError as error:
        raise HubError(f"{where}: {error}") from None
    except OfflineModeIsEnabled:
        raise HubError(f"{where}: cannot resolve the revision offline (HF_HUB_OFFLINE=1)") from None
    if not info.sha:
        raise HubError(f"{where}: the Hub returned no commit sha")
    return info.sha
