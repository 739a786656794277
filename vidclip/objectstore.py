"""Object storage, configured one way for the store and for input videos.

A store on `s3://`, `gs://` or `az://` is opened by LanceDB with *storage options*: the keys
Lance documents (https://lancedb.github.io/lance/guide/object_store), e.g. `aws_endpoint`,
`aws_region`, `allow_http`.  Input videos on object storage are read with pyarrow.fs, configured
from the same keys (`filesystem`), so one set of options reaches both.  Options come from
`--storage-option KEY=VALUE`, a `--storage-options-file` of KEY=VALUE lines, or the environment
variables Lance and the AWS/Azure/Google SDKs read (AWS_ACCESS_KEY_ID, AWS_ENDPOINT, ...).

`check_options` refuses a key Lance would not understand (it would ignore it silently) and a
plain-HTTP endpoint without `allow_http`; `describe_connection_failure` turns the object store
client's 40-line retry errors into one line naming the endpoint and the likely fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from vidclip.errors import InputError

REMOTE_SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "az": "az", "abfs": "az", "abfss": "az"}

# Keys every object store takes (Lance's general options and the HTTP client's).
_GENERAL = (
    "allow_http allow_invalid_certificates connect_timeout timeout request_timeout user_agent proxy_url "
    "proxy_ca_certificate proxy_excludes download_retry_count client_max_retries client_retry_timeout "
    "pool_idle_timeout pool_max_idle_per_host http1_only http2_only default_content_type randomize_addresses "
    "http2_keep_alive_interval http2_keep_alive_timeout http2_keep_alive_while_idle http2_max_frame_size "
    "expires_at_millis new_table_data_storage_version new_table_enable_v2_manifest_paths"
).split()
_AWS = (
    "access_key_id secret_access_key session_token token region default_region endpoint endpoint_url bucket "
    "bucket_name virtual_hosted_style_request s3_express imdsv1_fallback metadata_endpoint unsigned_payload "
    "checksum_algorithm container_credentials_relative_uri container_credentials_full_uri "
    "container_authorization_token_file skip_signature server_side_encryption sse_kms_key_id "
    "sse_bucket_key_enabled sse_customer_key_base64 copy_if_not_exists conditional_put disable_tagging "
    "request_payer web_identity_token_file role_arn role_session_name sts_endpoint profile provider_scheme"
).split()
_GOOGLE = (
    "service_account service_account_path service_account_key bucket bucket_name application_credentials "
    "skip_signature"
).split()
_AZURE = (
    "storage_account_name account_name storage_account_key storage_access_key storage_master_key access_key "
    "account_key master_key storage_client_id client_id storage_client_secret client_secret storage_tenant_id "
    "storage_authority_id tenant_id authority_id storage_sas_key storage_sas_token sas_key sas_token "
    "storage_token bearer_token token storage_use_emulator use_emulator storage_endpoint endpoint msi_endpoint "
    "identity_endpoint object_id msi_resource_id federated_token_file use_fabric_endpoint use_azure_cli "
    "skip_signature container_name disable_tagging fabric_token_service_url"
).split()
# Which keys a store of each scheme accepts: the plain name and the provider-prefixed one.
_KEYS = {
    "s3": frozenset(_GENERAL) | frozenset(_AWS) | {f"aws_{k}" for k in _AWS + _GENERAL},
    "gs": frozenset(_GENERAL) | frozenset(_GOOGLE) | {f"google_{k}" for k in _GOOGLE + _GENERAL},
    "az": frozenset(_GENERAL) | frozenset(_AZURE) | {f"azure_{k}" for k in _AZURE + _GENERAL},
}
_ALL_KEYS = frozenset().union(*_KEYS.values())
_SECRET = re.compile(r"secret|key|token|password|credential|sas", re.IGNORECASE)


@dataclass(frozen=True)
class ObjectStorage:
    """Storage options, lower-case keys, as given by the user (the environment is read where used).
    Built once at the edge; hashable, picklable (it travels to decode children and Ray tasks), and
    its repr hides secrets."""

    options: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, options: dict | None) -> "ObjectStorage":
        return cls(tuple(sorted((str(k).lower(), str(v)) for k, v in (options or {}).items())))

    def as_dict(self) -> dict | None:
        return dict(self.options) or None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={'***' if _SECRET.search(k) else v}" for k, v in self.options)
        return f"ObjectStorage({shown})"


def scheme_of(uri: str) -> str | None:
    """'s3', 'gs' or 'az' for an object-store URI; None for a local path (or file://)."""
    head, sep, _ = str(uri).partition("://")
    if not sep:
        return None
    return REMOTE_SCHEMES.get(head.lower())


def is_remote(uri: str) -> bool:
    return scheme_of(uri) is not None


def check_uri(uri: str) -> None:
    """Refuse a URI scheme that is neither local nor an object store vidclip can read."""
    head, sep, _ = str(uri).partition("://")
    if sep and head.lower() != "file" and head.lower() not in REMOTE_SCHEMES:
        raise InputError(f"{uri}: unsupported URI scheme {head!r} (use a local path, s3://, gs:// or az://)")


def parse_pairs(pairs: list[str], file: str | None = None) -> dict:
    """Options from a KEY=VALUE file (one per line, '#' comments, an optional 'export ') and from
    KEY=VALUE flags, which win.  Keys are case-insensitive, as in Lance."""
    options: dict[str, str] = {}
    if file:
        try:
            with open(file, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise InputError(f"{file}: cannot read storage options file ({exc.strerror or exc})") from None
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.removeprefix("export ").partition("=")
            if not sep or not key.strip():
                raise InputError(f"{file}:{n}: expected KEY=VALUE, got {line[:60]!r}")
            options[key.strip().lower()] = value.strip().strip("'\"")
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--storage-option expects KEY=VALUE, got {pair!r}")
        options[key.strip().lower()] = value
    return options


def check_options(uri: str | None, options: dict | None) -> None:
    """Refuse keys the object store for `uri` would not understand, and a plain-HTTP endpoint
    without allow_http.  For a local store (or none) the keys are checked against every scheme:
    they may still configure object-store inputs."""
    if not options:
        options = {}
    scheme = scheme_of(uri) if uri else None
    valid = _KEYS[scheme] if scheme else _ALL_KEYS
    unknown = sorted(k for k in options if k.lower() not in valid)
    if unknown:
        listed = ", ".join(sorted(k for k in valid if not k.startswith(("aws_", "google_", "azure_"))))
        where = f"a {scheme}:// store" if scheme else "object storage"
        raise InputError(f"unknown storage option {', '.join(map(repr, unknown))} for {where}; valid keys: {listed} "
                         f"(each also with its {_PREFIX.get(scheme, 'aws_/google_/azure_')} prefix)")
    effective = _effective(scheme or "s3", options)
    endpoint = _first(effective, _ENDPOINT_KEYS)
    if endpoint and endpoint.lower().startswith("http://") and not _true(_first(effective, ("allow_http",))):
        raise InputError(f"endpoint {endpoint} is plain HTTP: add --storage-option allow_http=true "
                         "(or use its https:// address)")


_PREFIX = {"s3": "aws_", "gs": "google_", "az": "azure_"}
_ENDPOINT_KEYS = ("aws_endpoint", "aws_endpoint_url", "endpoint", "endpoint_url", "azure_storage_endpoint",
                  "azure_endpoint", "google_endpoint")


def _env_options(scheme: str) -> dict:
    """The storage options set in the environment (upper-case names), as Lance reads them."""
    prefix = _PREFIX.get(scheme, "")
    out = {}
    for name, value in os.environ.items():
        key = name.lower()
        if key in _KEYS.get(scheme, ()) and (key.startswith(prefix) or key in _GENERAL):
            out[key] = value
    return out


def _effective(scheme: str, options: dict) -> dict:
    return {**_env_options(scheme), **{k.lower(): v for k, v in options.items()}}


def _first(options: dict, keys) -> str | None:
    for key in keys:
        if options.get(key):
            return options[key]
    return None


def _true(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _seconds(value: str | None) -> float | None:
    """'30s', '5', '1m', '500ms' -> seconds (the duration form Lance's options use)."""
    if not value:
        return None
    m = re.fullmatch(r"\s*([\d.]+)\s*(ms|s|m|min|h)?\s*", value)
    if not m:
        return None
    scale = {"ms": 1e-3, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}[m.group(2)]
    return float(m.group(1)) * scale


def endpoint_of(uri: str, options: dict | None) -> str:
    """The endpoint a store or object URI talks to, for messages."""
    scheme = scheme_of(uri) or "s3"
    endpoint = _first(_effective(scheme, options or {}), _ENDPOINT_KEYS)
    if endpoint:
        return endpoint
    return {"s3": "AWS S3", "gs": "Google Cloud Storage", "az": "Azure Blob Storage"}[scheme]


def filesystem(uri: str, storage: ObjectStorage):
    """(pyarrow FileSystem, path inside it) for an object-store URI, configured from the same storage
    options as the store.  Credentials not given fall back to each SDK's default chain."""
    import pyarrow.fs as pafs

    scheme = scheme_of(uri)
    if scheme is None:
        raise InputError(f"{uri}: not an object-store URI")
    path = str(uri).partition("://")[2]
    opts = _effective(scheme, dict(storage.options))
    try:
        if scheme == "s3":
            return pafs.S3FileSystem(**_s3_kwargs(opts)), path
        if scheme == "az":
            return _azure(opts, path)
        if scheme == "gs":
            kwargs = {}
            endpoint = _first(opts, ("google_endpoint", "endpoint"))
            if endpoint:
                scheme_part, _, host = endpoint.partition("://")
                kwargs.update(endpoint_override=host or scheme_part, scheme=scheme_part if host else "https")
            if _true(_first(opts, ("google_skip_signature", "skip_signature"))):
                kwargs["anonymous"] = True
            return pafs.GcsFileSystem(**kwargs), path
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{uri}: cannot configure {scheme}:// access ({' '.join(str(exc).split())[:200]})") from None
    raise InputError(f"{uri}: unsupported URI scheme")


def _s3_kwargs(opts: dict) -> dict:
    kwargs: dict = {}
    access = _first(opts, ("aws_access_key_id", "access_key_id"))
    secret = _first(opts, ("aws_secret_access_key", "secret_access_key"))
    if access and secret:
        kwargs.update(access_key=access, secret_key=secret)
        token = _first(opts, ("aws_session_token", "aws_token", "session_token", "token"))
        if token:
            kwargs["session_token"] = token
    region = _first(opts, ("aws_region", "region", "aws_default_region", "default_region"))
    if region:
        kwargs["region"] = region
    endpoint = _first(opts, _ENDPOINT_KEYS[:4])
    if endpoint:
        scheme_part, sep, host = endpoint.partition("://")
        kwargs["endpoint_override"] = host.rstrip("/") if sep else endpoint
        kwargs["scheme"] = scheme_part if sep else "https"
    if _true(_first(opts, ("aws_virtual_hosted_style_request", "virtual_hosted_style_request"))):
        kwargs["force_virtual_addressing"] = True
    if _true(_first(opts, ("aws_skip_signature", "skip_signature"))):
        kwargs["anonymous"] = True
    connect = _seconds(_first(opts, ("aws_connect_timeout", "connect_timeout")))
    request = _seconds(_first(opts, ("aws_timeout", "timeout", "request_timeout")))
    if connect:
        kwargs["connect_timeout"] = connect
    if request:
        kwargs["request_timeout"] = request
    proxy = _first(opts, ("aws_proxy_url", "proxy_url"))
    if proxy:
        kwargs["proxy_options"] = proxy
    return kwargs


def _azure(opts: dict, path: str):
    import pyarrow.fs as pafs

    kwargs = {}
    for ours, theirs in ((("azure_storage_account_name", "account_name"), "account_name"),
                         (("azure_storage_account_key", "account_key", "access_key"), "account_key"),
                         (("azure_storage_sas_token", "azure_storage_sas_key", "sas_token", "sas_key"), "sas_token"),
                         (("azure_client_id", "azure_storage_client_id", "client_id"), "client_id"),
                         (("azure_client_secret", "azure_storage_client_secret", "client_secret"), "client_secret"),
                         (("azure_tenant_id", "azure_storage_tenant_id", "tenant_id"), "tenant_id")):
        value = _first(opts, ours)
        if value:
            kwargs[theirs] = value
    endpoint = _first(opts, ("azure_storage_endpoint", "azure_endpoint", "endpoint"))
    if endpoint:
        scheme_part, _, host = endpoint.partition("://")
        kwargs.update(blob_storage_authority=host.rstrip("/"), blob_storage_scheme=scheme_part)
    if "account_name" not in kwargs:
        raise InputError("az:// inputs need --storage-option azure_storage_account_name=ACCOUNT")
    return pafs.AzureFileSystem(**kwargs), path


# -- failures in one line ----------------------------------------------------------------------------
_FAILURES = (
    (re.compile(r"failed to get aws credentials|no credentials|missingcredentials|unable to load credentials"
                r"|no authentication information", re.I),
     "no credentials found: pass --storage-option aws_access_key_id=... and aws_secret_access_key=... "
     "(or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"),
    (re.compile(r"invalidaccesskeyid|signaturedoesnotmatch|authenticationfailed|invalid_access_key|"
                r"the aws access key id you provided|incorrect signature", re.I),
     "the credentials were refused: check aws_access_key_id / aws_secret_access_key (and aws_session_token)"),
    (re.compile(r"permanentredirect|authorizationheadermalformed|wrong region|incorrectregion|"
                r"http status 301|status: 301", re.I),
     "the bucket is in another region: pass --storage-option aws_region=REGION"),
    (re.compile(r"nosuchbucket|bucket does not exist|bucket '.*' not found|containernotfound", re.I),
     "the bucket does not exist: create it, or check the URI and the endpoint"),
    (re.compile(r"kind: builder.*http|url scheme is not allowed|https? (?:is )?not allowed", re.I),
     "the endpoint is plain HTTP: add --storage-option allow_http=true"),
    (re.compile(r"kind: connect|connection refused|couldn't connect|could not connect|dns error|"
                r"failed to lookup address|name or service not known|network_connection|timed out|curlcode: (?:6|7|28)",
                re.I),
     "cannot reach the endpoint: check the address (aws_endpoint), that the server is up, and the network"),
    (re.compile(r"accessdenied|access denied|forbidden|status: 403|http status 403", re.I),
     "access denied: the credentials lack permission for this bucket or prefix"),
)


def describe_connection_failure(exc: BaseException, uri: str, options: dict | None) -> str | None:
    """One line for an object-store failure reaching `uri`, or None for a local store or an error
    that is not about reaching the store."""
    if not is_remote(uri):
        return None
    raw = " ".join(str(exc).split())
    for pattern, advice in _FAILURES:
        if pattern.search(raw):
            return f"{uri}: {advice} (endpoint: {endpoint_of(uri, options)})"
    return None
