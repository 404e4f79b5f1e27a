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
# Per call, on top of our own bounded retries (storage.with_retries).
SDK_RETRIES = 2
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


def azure_lake(account: str, credential: Credential, *, endpoint: str = "",
               containers: dict[str, str] | None = None) -> Lake:
    """A Lake in `account`, one container per layer (default: the layer's name)."""
    from azure.storage.blob import BlobServiceClient

    containers = {layer: (containers or {}).get(layer) or layer for layer in LAYERS}
    options: dict[str, str] = {"account_name": account}
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
        options.update(client_id=credential.client_id, client_secret=credential.client_secret,
                       tenant_id=credential.tenant_id)
        blob_credential = ClientSecretCredential(credential.tenant_id, credential.client_id,
                                                 credential.client_secret)
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
    service = BlobServiceClient(_blob_url(account, endpoint), credential=blob_credential,
                                retry_total=SDK_RETRIES, connection_timeout=CONNECT_TIMEOUT_SECONDS)
    return Lake(root=f"az://{account}", storage_options=options,
                files=AzureFiles(service, account, containers), containers=containers)


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
                f"AZURE_{layer.upper()}_CONTAINER") from None
        except ClientAuthenticationError as e:
            raise LakeConfigError(
                f"storage account '{files.account}' refused the credential "
                f"({getattr(e, 'error_code', None) or 'authentication failed'}) for container "
                f"'{container}': check the key, SAS token or service principal") from None
        except HttpResponseError as e:
            if e.status_code in (401, 403):
                raise LakeConfigError(
                    f"storage account '{files.account}' refused the credential "
                    f"({e.error_code or e.status_code}) for container '{container}': check the "
                    f"key, SAS token or service principal and its permissions") from None
            raise LakeConfigError(
                f"storage account '{files.account}' answered HTTP {e.status_code} "
                f"({e.error_code}) for container '{container}'") from None
        except ServiceRequestError:
            raise LakeConfigError(
                f"cannot reach the blob endpoint of storage account '{files.account}' "
                f"({urlparse(files.service.url).netloc})") from None
