"""Bulk import of nodes from CSV: parse and validate the whole file, then create everything or nothing.

The format (also served as a template at /provider/nodes/import/template.csv):

    hostname,cluster,accelerator_model,card_count,cpu_cores,ram_gb,disk_gb,cpu_model
    gpu-a-001,12,nvidia-h100-sxm5-80gb,8,128,2048,15360,Intel Xeon Platinum 8480+

- UTF-8 text (a BOM is fine), comma-separated, one header line. Column names are case-insensitive;
  cpu_model is optional, every other column is required; unknown columns are refused (a typo such as
  "ram" would otherwise be silently ignored).
- cluster: the cluster's id (shown on its page and in the API), or its name when that name is
  unique among your clusters.
- accelerator_model: a catalog name ("H100 SXM5 80GB") or slug ("nvidia-h100-sxm5-80gb"), any case.
- Row numbers in the report are spreadsheet rows: the header is row 1, the first node is row 2.
- At most NODE_IMPORT_MAX_BYTES bytes and NODE_IMPORT_MAX_ROWS nodes per file.
"""

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import Q

from accounts.models import Organization
from inventory.models import AcceleratorModel, Cluster, Node, Site

NODE_IMPORT_MAX_BYTES = 5 * 1024 * 1024
NODE_IMPORT_MAX_ROWS = 10_000
# Only the first problems are listed (a file of garbage would otherwise produce a report as big as itself).
NODE_IMPORT_MAX_REPORTED_ROWS = 500

REQUIRED_COLUMNS = ("hostname", "cluster", "accelerator_model", "card_count", "cpu_cores", "ram_gb", "disk_gb")
OPTIONAL_COLUMNS = ("cpu_model",)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
# Same bounds as the Node model's validators.
INTEGER_BOUNDS = {"card_count": (1, 64), "cpu_cores": (1, 4096), "ram_gb": (1, 65536), "disk_gb": (1, 10_000_000)}

TEMPLATE_EXAMPLE_ROWS = [
    ("gpu-a-001", "nvidia-h100-sxm5-80gb", "8", "128", "2048", "15360", "Intel Xeon Platinum 8480+"),
    ("gpu-a-002", "nvidia-h100-sxm5-80gb", "8", "128", "2048", "15360", "Intel Xeon Platinum 8480+"),
]


@dataclass
class RowError:
    row: int
    column: str
    message: str

    def __str__(self):
        return f"Row {self.row}: {self.column}: {self.message}"


@dataclass
class NodeImportInvalid(Exception):
    """The file was refused; nothing was imported."""

    file_errors: list[str] = field(default_factory=list)
    row_errors: list[RowError] = field(default_factory=list)
    bad_row_count: int = 0

    @property
    def message(self) -> str:
        if self.file_errors:
            return self.file_errors[0] + " Nothing was imported."
        rows = "1 row is" if self.bad_row_count == 1 else f"{self.bad_row_count} rows are"
        return f"{rows} invalid; nothing was imported. Fix them and upload the whole file again."

    def fields(self) -> dict[str, list[str]]:
        """The API's error fields: {"file": [...]} or {"row 7": ["accelerator_model: ..."], ...}."""
        if self.file_errors:
            return {"file": list(self.file_errors)}
        out: dict[str, list[str]] = {}
        for error in self.row_errors:
            out.setdefault(f"row {error.row}", []).append(f"{error.column}: {error.message}")
        return out

    def __str__(self):
        return self.message


def node_import_template(*, cluster: Cluster | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    cluster_value = str(cluster.pk) if cluster else "CLUSTER_ID"
    for hostname, model, cards, cores, ram, disk, cpu in TEMPLATE_EXAMPLE_ROWS:
        writer.writerow([hostname, cluster_value, model, cards, cores, ram, disk, cpu])
    return buffer.getvalue()


def _decode(data: bytes) -> str:
    if len(data) > NODE_IMPORT_MAX_BYTES:
        raise NodeImportInvalid(
            file_errors=[f"The file is {len(data) / 1024 / 1024:.1f} MB; the limit is {NODE_IMPORT_MAX_BYTES // 1024 // 1024} MB."]
        )
    if not data.strip():
        raise NodeImportInvalid(file_errors=["The file is empty."])
    if b"\x00" in data:
        raise NodeImportInvalid(file_errors=["This is not a CSV text file (it contains binary data)."])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise NodeImportInvalid(
            file_errors=[f"The file is not UTF-8 text (undecodable byte at position {error.start}); save it as CSV UTF-8."]
        ) from None


def _integer(raw: str, column: str) -> tuple[int | None, str | None]:
    raw = raw.strip()
    if not raw:
        return None, "a whole number is required"
    try:
        value = int(raw)
    except ValueError:
        return None, f"'{raw[:30]}' is not a whole number"
    low, high = INTEGER_BOUNDS[column]
    if not low <= value <= high:
        return None, f"{value} is out of range ({low} to {high:,})"
    return value, None


def node_import_file_check(*, data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The file's shape (size, encoding, header, row count) - cheap enough for the request; the rows
    themselves are checked by node_rows_parse. Returns the columns and the (row number, values) rows;
    NodeImportInvalid with a file error otherwise."""
    text = _decode(data)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            raise NodeImportInvalid(file_errors=["The file is empty."])
        columns = [name.strip().lower() for name in header]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        unknown = [name for name in columns if name and name not in COLUMNS]
        duplicated = sorted({name for name in columns if name and columns.count(name) > 1})
        problems = []
        if missing:
            problems.append(f"Missing column(s): {', '.join(missing)}.")
        if unknown:
            problems.append(f"Unknown column(s): {', '.join(repr(name[:40]) for name in unknown[:10])}.")
        if duplicated:
            problems.append(f"Column(s) given twice: {', '.join(duplicated)}.")
        if problems:
            problems.append(f"The header must be: {','.join(COLUMNS)} (cpu_model is optional).")
            raise NodeImportInvalid(file_errors=[" ".join(problems)])
        raw_rows = []
        for values in reader:
            if not any(value.strip() for value in values):
                continue  # blank line
            raw_rows.append((reader.line_num, values))
            if len(raw_rows) > NODE_IMPORT_MAX_ROWS:
                raise NodeImportInvalid(file_errors=[f"The file has more than {NODE_IMPORT_MAX_ROWS:,} nodes; split it."])
    except csv.Error as error:
        raise NodeImportInvalid(file_errors=[f"This is not a readable CSV file ({error})."]) from None
    if not raw_rows:
        raise NodeImportInvalid(file_errors=["The file has a header but no nodes."])

    return columns, raw_rows


def node_rows_parse(*, organization: Organization, data: bytes, progress: Callable[..., None] | None = None) -> list[dict]:
    """Validated rows ready for inventory.services.nodes_bulk_create; NodeImportInvalid on any problem.

    A handful of queries whatever the size: the organization's clusters, the catalog, and the
    hostnames already in the clusters the file names.
    """
    from inventory.services import hostname_problem  # services imports this module lazily, too

    columns, raw_rows = node_import_file_check(data=data)
    if progress is not None:
        progress(done=0, total=len(raw_rows))
    clusters = list(
        Cluster.objects.filter(site__owner=organization).select_related("site")
    )
    clusters_by_id = {str(cluster.pk): cluster for cluster in clusters}
    clusters_by_name: dict[str, list[Cluster]] = {}
    for cluster in clusters:
        clusters_by_name.setdefault(cluster.name.lower(), []).append(cluster)
    models_by_key: dict[str, AcceleratorModel] = {}
    for model in AcceleratorModel.objects.all():
        models_by_key[model.slug.lower()] = model
        models_by_key[model.name.lower()] = model

    errors: list[RowError] = []
    rows: list[dict] = []
    row_numbers: list[int] = []
    first_row_of: dict[tuple[int, str], int] = {}
    for index, (row_number, values) in enumerate(raw_rows):
        if progress is not None:
            progress(done=index)
        row_errors: list[RowError] = []
        if len(values) < len(columns) and all(name in OPTIONAL_COLUMNS for name in columns[len(values):]):
            values = values + [""] * (len(columns) - len(values))  # trailing optional values left out
        if len(values) != len(columns):
            errors.append(RowError(row_number, "row", f"has {len(values)} values, the header has {len(columns)}"))
            continue
        cell = {name: value for name, value in zip(columns, values, strict=True) if name}

        hostname = cell["hostname"].strip().lower()
        problem = hostname_problem(hostname)
        if problem:
            row_errors.append(RowError(row_number, "hostname", problem))

        cluster_key = cell["cluster"].strip()
        cluster = clusters_by_id.get(cluster_key)
        if cluster is None:
            named = clusters_by_name.get(cluster_key.lower(), [])
            if len(named) == 1:
                cluster = named[0]
            elif len(named) > 1:
                row_errors.append(RowError(row_number, "cluster", f"several of your clusters are named '{cluster_key[:60]}'; use the cluster id"))
            elif not cluster_key:
                row_errors.append(RowError(row_number, "cluster", "a cluster id is required"))
            else:
                row_errors.append(RowError(row_number, "cluster", f"'{cluster_key[:60]}' is not one of your clusters"))
        if cluster is not None and cluster.site.lifecycle == Site.Lifecycle.RETIRED:
            row_errors.append(RowError(row_number, "cluster", f"cluster '{cluster.name}' is in a retired site"))
            cluster = None

        model_key = cell["accelerator_model"].strip()
        model = models_by_key.get(model_key.lower())
        if model is None:
            message = f"unknown accelerator model '{model_key[:60]}' (use a catalog name or slug)" if model_key else "an accelerator model is required"
            row_errors.append(RowError(row_number, "accelerator_model", message))

        numbers = {}
        for column in INTEGER_BOUNDS:
            numbers[column], problem = _integer(cell[column], column)
            if problem:
                row_errors.append(RowError(row_number, column, problem))

        cpu_model = cell.get("cpu_model", "").strip()
        if len(cpu_model) > 120:
            row_errors.append(RowError(row_number, "cpu_model", "at most 120 characters"))
        elif not cpu_model.isprintable():
            row_errors.append(RowError(row_number, "cpu_model", "printable characters only (no control characters or line breaks)"))

        if cluster is not None and not problem_in(row_errors, "hostname"):
            key = (cluster.pk, hostname)
            if key in first_row_of:
                row_errors.append(RowError(row_number, "hostname", f"'{hostname}' is already in row {first_row_of[key]} for the same cluster"))
            else:
                first_row_of[key] = row_number

        if row_errors:
            errors.extend(row_errors)
            continue
        rows.append({"cluster": cluster, "hostname": hostname, "accelerator_model": model, "cpu_model": cpu_model, **numbers})
        row_numbers.append(row_number)

    # Hostnames already listed in those clusters: one query for the whole file.
    if first_row_of:
        wanted = Q()
        by_cluster: dict[int, list[str]] = {}
        for cluster_id, hostname in first_row_of:
            by_cluster.setdefault(cluster_id, []).append(hostname)
        for cluster_id, hostnames in by_cluster.items():
            wanted |= Q(cluster_id=cluster_id, hostname__in=hostnames)
        existing = set(Node.objects.filter(wanted).values_list("cluster_id", "hostname"))
        for key in sorted(existing, key=lambda k: first_row_of[k]):
            errors.append(RowError(first_row_of[key], "hostname", f"'{key[1]}' is already listed in this cluster"))

    if errors:
        errors.sort(key=lambda e: e.row)
        bad_rows = sorted({error.row for error in errors})
        reported_rows = set(bad_rows[:NODE_IMPORT_MAX_REPORTED_ROWS])
        raise NodeImportInvalid(
            row_errors=[error for error in errors if error.row in reported_rows], bad_row_count=len(bad_rows)
        )
    return rows


def problem_in(errors: list[RowError], column: str) -> bool:
    return any(error.column == column for error in errors)
