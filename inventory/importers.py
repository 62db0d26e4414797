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
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

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
        return _("Row %(row)d: %(column)s: %(message)s") % {"row": self.row, "column": self.column, "message": self.message}


@dataclass
class NodeImportInvalid(Exception):
    """The file was refused; nothing was imported."""

    file_errors: list[str] = field(default_factory=list)
    row_errors: list[RowError] = field(default_factory=list)
    bad_row_count: int = 0

    @property
    def message(self) -> str:
        if self.file_errors:
            return _("%(problem)s Nothing was imported.") % {"problem": self.file_errors[0]}
        return ngettext(
            "%(count)d row is invalid; nothing was imported. Fix it and upload the whole file again.",
            "%(count)d rows are invalid; nothing was imported. Fix them and upload the whole file again.",
            self.bad_row_count,
        ) % {"count": self.bad_row_count}

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
            file_errors=[_("The file is %(size).1f MB; the limit is %(limit)d MB.") % {
                "size": len(data) / 1024 / 1024, "limit": NODE_IMPORT_MAX_BYTES // 1024 // 1024,
            }]
        )
    if not data.strip():
        raise NodeImportInvalid(file_errors=[_("The file is empty.")])
    if b"\x00" in data:
        raise NodeImportInvalid(file_errors=[_("This is not a CSV text file (it contains binary data).")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise NodeImportInvalid(
            file_errors=[_("The file is not UTF-8 text (undecodable byte at position %(position)d); save it as CSV UTF-8.")
                         % {"position": error.start}]
        ) from None


def _integer(raw: str, column: str) -> tuple[int | None, str | None]:
    raw = raw.strip()
    if not raw:
        return None, _("a whole number is required")
    try:
        value = int(raw)
    except ValueError:
        return None, _("'%(value)s' is not a whole number") % {"value": raw[:30]}
    low, high = INTEGER_BOUNDS[column]
    if not low <= value <= high:
        return None, _("%(value)d is out of range (%(low)d to %(high)s)") % {"value": value, "low": low, "high": f"{high:,}"}
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
            raise NodeImportInvalid(file_errors=[_("The file is empty.")])
        columns = [name.strip().lower() for name in header]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        unknown = [name for name in columns if name and name not in COLUMNS]
        duplicated = sorted({name for name in columns if name and columns.count(name) > 1})
        problems = []
        if missing:
            problems.append(_("Missing column(s): %(columns)s.") % {"columns": ", ".join(missing)})
        if unknown:
            problems.append(_("Unknown column(s): %(columns)s.") % {"columns": ", ".join(repr(name[:40]) for name in unknown[:10])})
        if duplicated:
            problems.append(_("Column(s) given twice: %(columns)s.") % {"columns": ", ".join(duplicated)})
        if problems:
            problems.append(_("The header must be: %(header)s (cpu_model is optional).") % {"header": ",".join(COLUMNS)})
            raise NodeImportInvalid(file_errors=[" ".join(problems)])
        raw_rows = []
        for values in reader:
            if not any(value.strip() for value in values):
                continue  # blank line
            raw_rows.append((reader.line_num, values))
            if len(raw_rows) > NODE_IMPORT_MAX_ROWS:
                raise NodeImportInvalid(file_errors=[
                    _("The file has more than %(rows)s nodes; split it.") % {"rows": f"{NODE_IMPORT_MAX_ROWS:,}"}
                ])
    except csv.Error as error:
        raise NodeImportInvalid(file_errors=[_("This is not a readable CSV file (%(error)s).") % {"error": error}]) from None
    if not raw_rows:
        raise NodeImportInvalid(file_errors=[_("The file has a header but no nodes.")])

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
            errors.append(RowError(row_number, "row", _("has %(values)d values, the header has %(columns)d") % {
                "values": len(values), "columns": len(columns),
            }))
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
                row_errors.append(RowError(row_number, "cluster", _("several of your clusters are named '%(name)s'; use the cluster id")
                                           % {"name": cluster_key[:60]}))
            elif not cluster_key:
                row_errors.append(RowError(row_number, "cluster", _("a cluster id is required")))
            else:
                row_errors.append(RowError(row_number, "cluster", _("'%(name)s' is not one of your clusters") % {"name": cluster_key[:60]}))
        if cluster is not None and cluster.site.lifecycle == Site.Lifecycle.RETIRED:
            row_errors.append(RowError(row_number, "cluster", _("cluster '%(name)s' is in a retired site") % {"name": cluster.name}))
            cluster = None

        model_key = cell["accelerator_model"].strip()
        model = models_by_key.get(model_key.lower())
        if model is None:
            if model_key:
                message = _("unknown accelerator model '%(model)s' (use a catalog name or slug)") % {"model": model_key[:60]}
            else:
                message = _("an accelerator model is required")
            row_errors.append(RowError(row_number, "accelerator_model", message))

        numbers = {}
        for column in INTEGER_BOUNDS:
            numbers[column], problem = _integer(cell[column], column)
            if problem:
                row_errors.append(RowError(row_number, column, problem))

        cpu_model = cell.get("cpu_model", "").strip()
        if len(cpu_model) > 120:
            row_errors.append(RowError(row_number, "cpu_model", _("at most 120 characters")))
        elif not cpu_model.isprintable():
            row_errors.append(RowError(row_number, "cpu_model", _("printable characters only (no control characters or line breaks)")))

        if cluster is not None and not problem_in(row_errors, "hostname"):
            key = (cluster.pk, hostname)
            if key in first_row_of:
                row_errors.append(RowError(row_number, "hostname", _("'%(hostname)s' is already in row %(row)d for the same cluster")
                                           % {"hostname": hostname, "row": first_row_of[key]}))
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
            errors.append(RowError(first_row_of[key], "hostname", _("'%(hostname)s' is already listed in this cluster") % {"hostname": key[1]}))

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
