"""Launch templates: the workload a buyer picks, mapped to the right container image per software stack.

A buyer asks for "PyTorch 2.x" or "vLLM", not for "nvcr.io/... on CUDA, rocm/... on ROCm": the
template shields the hardware differences. An offer whose stack has no image for the template cannot
run it, so quotes exclude it with its own reason (selectors.Exclusion.NO_IMAGE_FOR_TEMPLATE) and
booking refuses it with a `launch_template` field error.

The catalog below is loaded by a data migration (0006_load_launch_templates). The image names are
references published by the vendors and projects as of 2026; they age, so platform
operators edit them in the admin (marketplace.admin), and the migration never runs again over their
edits. A stack is left without an image where no public image is known: then the exclusion reason
says so, instead of a guessed name failing at boot.
"""

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.translation import gettext as _

from inventory.models import SoftwareStack
from marketplace.models import LaunchTemplate, LaunchTemplateImage

# What a booking runs when the API caller names no template: a shell on the cards, which every stack
# the node agent can map supports (nodeagent.containers._device_flags).
DEFAULT_LAUNCH_TEMPLATE = "bare-ssh"

# Stacks whose cards reach a container through device nodes or the vendor's container runtime alone
# (nodeagent.containers._device_flags): a plain Ubuntu image is enough for a shell. CUDA and ROCm get
# the vendors' small base images instead, which carry the user-space libraries most tools expect.
_PLAIN_UBUNTU_STACKS = ("cann", "dtk", "neuware", "maca", "musa", "synapseai", "corex", "topsrider", "kunlun")
_PLAIN_UBUNTU = "ubuntu:24.04"

LAUNCH_TEMPLATES: list[dict] = [
    {
        "slug": "pytorch-2",
        "name": "PyTorch 2.x",
        "workload_kind": LaunchTemplate.WorkloadKind.TRAINING,
        "description": "PyTorch 2 with the vendor's backend (CUDA, ROCm, torch_npu, DTK, Gaudi) preinstalled.",
        "images": {
            "cuda": "nvcr.io/nvidia/pytorch:24.10-py3",
            "rocm": "rocm/pytorch:latest",
            "cann": "quay.io/ascend/cann:8.0.0-910b-ubuntu22.04-py3.10",
            "dtk": "image.sourcefind.cn:5000/dcu/admin/base/pytorch:2.4.1-ubuntu22.04-dtk25.04-py3.10",
            "synapseai": "vault.habana.ai/gaudi-docker/1.18.0/ubuntu22.04/habanalabs/pytorch-installer-2.4.0:latest",
        },
        "notes": {"cann": "CANN base image; install torch_npu matching the CANN version with pip."},
    },
    {
        "slug": "vllm",
        "name": "vLLM",
        "workload_kind": LaunchTemplate.WorkloadKind.INFERENCE,
        "description": "The vLLM OpenAI-compatible inference server.",
        "images": {
            "cuda": "vllm/vllm-openai:latest",
            "rocm": "rocm/vllm:latest",
            "cann": "quay.io/ascend/vllm-ascend:v0.13.0",
        },
        "notes": {},
    },
    {
        "slug": DEFAULT_LAUNCH_TEMPLATE,
        "name": "Bare SSH",
        "workload_kind": LaunchTemplate.WorkloadKind.SHELL,
        "description": "A plain Ubuntu shell on the cards, reachable over SSH; bring your own software.",
        "images": {
            "cuda": "nvidia/cuda:12.6.3-base-ubuntu24.04",
            "rocm": "rocm/dev-ubuntu-24.04:latest",
            **{stack: _PLAIN_UBUNTU for stack in _PLAIN_UBUNTU_STACKS},
        },
        "notes": {},
    },
]


def load_launch_templates(*, template_cls=LaunchTemplate, image_cls=LaunchTemplateImage) -> int:
    """Create the templates and images that do not exist yet; never overwrites an operator's edit.

    Takes the model classes so the data migration can pass its historical models. Returns how many
    images were created.
    """
    created = 0
    for entry in LAUNCH_TEMPLATES:
        template, _created = template_cls.objects.get_or_create(
            slug=entry["slug"],
            defaults={"name": entry["name"], "description": entry["description"], "workload_kind": entry["workload_kind"]},
        )
        for stack, image in entry["images"].items():
            _, was_created = image_cls.objects.get_or_create(
                template=template, stack=stack, defaults={"image": image, "notes": entry["notes"].get(stack, "")}
            )
            created += was_created
    return created


# --- selectors --------------------------------------------------------------------------------


def launch_template_list() -> QuerySet[LaunchTemplate]:
    """The templates buyers can pick, with their images (one extra query for all of them)."""
    return LaunchTemplate.objects.filter(is_active=True).prefetch_related("images")


def launch_template_get(*, slug: str) -> LaunchTemplate | None:
    return launch_template_list().filter(slug=slug).first()


def launch_template_image(*, template: LaunchTemplate, stack: str) -> LaunchTemplateImage | None:
    """The image that runs `template` on `stack`, or None when the stack cannot run it."""
    return template.image_for(stack)


def launch_template_stacks(*, template: LaunchTemplate) -> set[str]:
    """The software stacks that have an image for `template`."""
    return {image.stack for image in template.images.all()}


def launch_template_choices() -> list[tuple[str, str]]:
    return [(template.slug, template.name) for template in LaunchTemplate.objects.filter(is_active=True)]


# --- booking rule -----------------------------------------------------------------------------


def launch_template_for_booking(*, slug: str | None, stack: str) -> LaunchTemplate:
    """The active template named `slug` (default: DEFAULT_LAUNCH_TEMPLATE), if it has an image for `stack`.

    Raises ValidationError on the `launch_template` field otherwise: an unknown or inactive template,
    or an offer whose stack cannot run it.
    """
    slug = slug or DEFAULT_LAUNCH_TEMPLATE
    # One statement on the booking path: the template and whether `stack` has an image, not the
    # template and then all its images (bookings are timed in bench/booking.py).
    has_image = Exists(LaunchTemplateImage.objects.filter(template=OuterRef("pk"), stack=stack))
    template = LaunchTemplate.objects.filter(is_active=True, slug=slug).annotate(_has_image=has_image).first()
    if template is None:
        known = ", ".join(slug for slug, _label in launch_template_choices())
        raise ValidationError({"launch_template": [_("No launch template %(slug)s. Known: %(known)s.") % {"slug": repr(slug), "known": known}]})
    if not template._has_image:
        raise ValidationError({"launch_template": [no_image_message(template=template, stack=stack)]})
    return template


def stack_label(stack: str) -> str:
    """A software stack by its name ("DTK (Hygon)"), not its stored code ("dtk"); an unknown code as it is."""
    return SoftwareStack(stack).label if stack in SoftwareStack.values else stack


def no_image_message(*, template: LaunchTemplate, stack: str) -> str:
    """One sentence for quotes and booking alike."""
    return _("%(template)s has no image for the %(stack)s software stack of these cards; pick another workload or another offer.") % {
        "template": template.name, "stack": stack_label(stack)}
