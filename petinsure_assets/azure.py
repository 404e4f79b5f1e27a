"""The lake on Azure Data Lake Storage Gen2: credentials mapped once, and a fail-fast check.

A credential is one of dagster-azure's config types (`ADLS2SASToken`, `ADLS2Key`,
`ADLS2DefaultAzureCredential`) or `ServicePrincipal`; `azure_lake` turns it into what the two
clients need: storage options for delta-rs (Delta tables) and a credential for azure-storage-blob
(raw files, exports, snapshots). Every secret is registered with `storage.redact`, so it is cut
out of any error message.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlparse

import dagster as dg
from dagster_azure.adls2 import ADLS2DefaultAzureCredential, ADLS2Key, ADLS2SASToken

from petinsure_assets.lake import LAYERS, Lake
from petinsure_assets.storage import AzureFiles, LakeConfigError, register_secret

STORAGE_SCOPE = "https://storage.azure.com/.default"
# The SDK's own retry (by default 15 s, then 45 s ... between tries) is cut to one quick retry:
# storage.with_retries adds the bounded exponential backoff on top.
SDK_RETRY_BACKOFF_SECONDS = 0.5
CONNECT_TIMEOUT_SECONDS = 10


class ServicePrincipal(dg.Config):
    """A service principal (Azure AD app) with a client secret, e.g. with "Storage Blob Data
    Contributor" on the storage account."""

    credential_type: Literal["service_principal"] = "service_principal"
    client_id: str
    client_secret: str
    tenant_id: str


Credential = ADLS2SASToken | ADLS2Key | ADLS2DefaultAzureCredential | ServicePrincipal


def _blob_url(account: str, endpoint: str) -> str:
    return endpoint.rstrip("/") if endpoint else f"https://{account}.blob.core.windows.net"


def azure_lake(
    account: str,
    credential: Credential,
    *,
    endpoint: str = "",
    containers: dict[str, str] | None = None,
) -> Lake:
    """A Lake in `account`, one container per layer (default: the layer's name)."""
    from azure.storage.blob import BlobServiceClient, LinearRetry

    containers = {layer: (containers or {}).get(layer) or layer for layer in LAYERS}
    # delta-rs (object_store) retries: one quick retry per call, like the blob client.
    options: dict[str, str] = {"account_name": account, "max_retries": "1", "retry_timeout": "30s"}
    if isinstance(credential, ADLS2SASToken):
        token = credential.token.lstrip("?")
        register_secret(token)
        options["sas_token"] = token
        blob_credential = token
    elif isinstance(credential, ADLS2Key):
        register_secret(credential.key)
        options["account_key"] = credential.key
        blob_credential = {"account_name": account, "account_key": credential.key}
    elif isinstance(credential, ServicePrincipal):
        from azure.identity import ClientSecretCredential

        register_secret(credential.client_secret)
        options.update(
            client_id=credential.client_id,
            client_secret=credential.client_secret,
            tenant_id=credential.tenant_id,
        )
        blob_credential = ClientSecretCredential(
            credential.tenant_id, credential.client_id, credential.client_secret
        )
    else:  # DefaultAzureCredential: managed identity, workload identity, az login, ...
        from azure.identity import DefaultAzureCredential

        blob_credential = DefaultAzureCredential(**credential.kwargs)
        token = blob_credential.get_token(STORAGE_SCOPE).token
        register_secret(token)
        options["bearer_token"] = token
    if endpoint:
        options["endpoint"] = endpoint.rstrip("/")
        if urlparse(endpoint).scheme == "http":
            options["allow_http"] = "true"
    service = BlobServiceClient(
        _blob_url(account, endpoint),
        credential=blob_credential,
        connection_timeout=CONNECT_TIMEOUT_SECONDS,
        retry_policy=LinearRetry(
            backoff=SDK_RETRY_BACKOFF_SECONDS, random_jitter_range=0, retry_total=1
        ),
    )
    return Lake(
        root=f"az://{account}",
        storage_options=options,
        files=AzureFiles(service, account, containers),
        containers=containers,
    )


def _code(e: Exception) -> str | None:
    code = getattr(e, "error_code", None)
    return getattr(code, "value", code)


def verify(lake: Lake) -> None:
    """Fail fast, with a message naming what is wrong, when the account cannot be used: each
    layer's container must exist and accept the credential."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    files: AzureFiles = lake.files
    for layer, container in files.containers.items():
        client = files.service.get_container_client(container)
        try:
            client.get_container_properties(retry_total=0)
        except ResourceNotFoundError:
            raise LakeConfigError(
                f"container '{container}' (the {layer} layer) does not exist in storage account "
                f"'{files.account}': create it, or name the right one in "
                f"AZURE_{layer.upper()}_CONTAINER"
            ) from None
        except ClientAuthenticationError as e:
            raise LakeConfigError(
                f"storage account '{files.account}' refused the credential "
                f"({_code(e) or 'authentication failed'}) for container "
                f"'{container}': check the key, SAS token or service principal"
            ) from None
        except HttpResponseError as e:
            if e.status_code in (401, 403):
                raise LakeConfigError(
                    f"storage account '{files.account}' refused the credential "
                    f"({_code(e) or e.status_code}) for container '{container}': check the "
                    f"key, SAS token or service principal and its permissions"
                ) from None
            raise LakeConfigError(
                f"storage account '{files.account}' answered HTTP {e.status_code} "
                f"({_code(e)}) for container '{container}'"
            ) from None
        except ServiceRequestError:
            raise LakeConfigError(
                f"cannot reach the blob endpoint of storage account '{files.account}' "
                f"({urlparse(files.service.url).netloc})"
            ) from None
