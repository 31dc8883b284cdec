#!/usr/bin/env python3
"""Generates crates/kubeway-lab/src/protobuf/generated.rs: field-by-field conversions between the
k8s-pb (protobuf) types and the k8s-openapi (JSON) types of every struct the lab's kinds reach.

Both crates are generated from the Kubernetes API definitions and name their Rust fields alike
(snake_case of the JSON name), so a struct pairs with the struct of the same module and name and a
field with the field of the same name. The script reads both crates' sources from the cargo
registry, walks the protobuf types from the root kinds below, and writes one `convert!` line per
struct: the fields the two sides share, and for each whether a zero scalar read from protobuf
is kept (see ZERO_KEPT) or means "unset". Fields only one side has are listed in a comment.

Run from the workspace root after changing a k8s-pb or k8s-openapi version:
    python3 scripts/gen-protobuf-conversions.py && cargo fmt --all
"""
import glob
import os
import re
import sys

REGISTRY = os.path.expanduser("~/.cargo/registry/src")
OPENAPI_VERSION = "v1_37"  # k8s-openapi's `latest` feature, as the workspace enables it
OUT = "crates/kubeway-lab/src/protobuf/generated.rs"

# The kinds the lab serves (and the request/response types around them), as protobuf paths.
ROOTS = [
    ("api/core/v1", n)
    for n in [
        "Namespace", "NamespaceList", "Node", "NodeList", "Pod", "PodList", "Service",
        "ServiceList", "Endpoints", "EndpointsList", "Event", "EventList", "ConfigMap",
        "ConfigMapList", "Secret", "SecretList",
    ]
] + [
    ("api/apps/v1", n)
    for n in [
        "Deployment", "DeploymentList", "ReplicaSet", "ReplicaSetList", "StatefulSet",
        "StatefulSetList", "ControllerRevision", "ControllerRevisionList",
    ]
] + [
    ("api/discovery/v1", "EndpointSlice"),
    ("api/discovery/v1", "EndpointSliceList"),
    ("api/networking/v1", "ServiceCIDR"),
    ("api/networking/v1", "ServiceCIDRList"),
    ("api/autoscaling/v1", "Scale"),
    ("apimachinery/pkg/apis/meta/v1", "Status"),
    ("apimachinery/pkg/apis/meta/v1", "DeleteOptions"),
]

# Converted by hand in protobuf/conv.rs: their wire forms differ between protobuf and JSON.
MANUAL = {
    ("apimachinery/pkg/apis/meta/v1", "Time"),
    ("apimachinery/pkg/apis/meta/v1", "MicroTime"),
    ("apimachinery/pkg/apis/meta/v1", "FieldsV1"),
    ("apimachinery/pkg/apis/meta/v1", "Duration"),
    ("apimachinery/pkg/runtime", "RawExtension"),
    ("apimachinery/pkg/api/resource", "Quantity"),
    ("apimachinery/pkg/util/intstr", "IntOrString"),
}

# Lists have no k8s-openapi struct (it uses a generic List<T>): protobuf/mod.rs builds them.
def is_list(name):
    return name.endswith("List") and name not in ("PodIPList",)

# Go always encodes a non-pointer scalar in protobuf, even at its zero value, and the apiserver's
# JSON then omits it (`omitempty`); a *pointer* scalar is encoded only when set, and a set zero is
# meaningful and shown. So a zero scalar read from protobuf means "unset" except for these Go
# pointer fields (struct, JSON field) of the kinds above, and for fields k8s-openapi marks required.
ZERO_KEPT = {
    # apps/v1
    ("DeploymentSpec", "replicas"), ("DeploymentSpec", "revision_history_limit"),
    ("DeploymentSpec", "progress_deadline_seconds"), ("ReplicaSetSpec", "replicas"),
    ("StatefulSetSpec", "replicas"), ("StatefulSetSpec", "revision_history_limit"),
    ("RollingUpdateStatefulSetStrategy", "partition"), ("StatefulSetOrdinals", "start"),
    ("ReplicaSetStatus", "replicas"), ("StatefulSetStatus", "replicas"),
    ("StatefulSetStatus", "collision_count"), ("DeploymentStatus", "collision_count"),
    ("StatefulSetStatus", "available_replicas"),
    # core/v1 pods
    ("PodSpec", "termination_grace_period_seconds"), ("PodSpec", "active_deadline_seconds"),
    ("PodSpec", "automount_service_account_token"), ("PodSpec", "share_process_namespace"),
    ("PodSpec", "priority"), ("PodSpec", "enable_service_links"), ("PodSpec", "host_users"),
    ("PodSpec", "set_hostname_as_fqdn"), ("PodSpec", "preemption_policy"),
    ("PodSpec", "runtime_class_name"), ("PodSpec", "hostname_override"),
    ("SecurityContext", "run_as_user"), ("SecurityContext", "run_as_group"),
    ("SecurityContext", "run_as_non_root"), ("SecurityContext", "privileged"),
    ("SecurityContext", "read_only_root_filesystem"),
    ("SecurityContext", "allow_privilege_escalation"), ("SecurityContext", "proc_mount"),
    ("PodSecurityContext", "run_as_user"), ("PodSecurityContext", "run_as_group"),
    ("PodSecurityContext", "run_as_non_root"), ("PodSecurityContext", "fs_group"),
    ("PodSecurityContext", "fs_group_change_policy"),
    ("PodSecurityContext", "supplemental_groups_policy"),
    ("Probe", "termination_grace_period_seconds"), ("Container", "restart_policy"),
    ("ContainerStatus", "started"), ("ContainerStatus", "restart_count"),
    ("ContainerStatus", "ready"), ("ContainerStateTerminated", "exit_code"),
    ("Toleration", "toleration_seconds"), ("GRPCAction", "service"),
    ("VolumeMount", "recursive_read_only"), ("VolumeMount", "mount_propagation"),
    ("ConfigMapVolumeSource", "default_mode"), ("ConfigMapVolumeSource", "optional"),
    ("SecretVolumeSource", "default_mode"), ("SecretVolumeSource", "optional"),
    ("ProjectedVolumeSource", "default_mode"), ("DownwardAPIVolumeSource", "default_mode"),
    ("KeyToPath", "mode"), ("DownwardAPIVolumeFile", "mode"),
    ("ConfigMapKeySelector", "optional"), ("SecretKeySelector", "optional"),
    ("ConfigMapEnvSource", "optional"), ("SecretEnvSource", "optional"),
    ("ConfigMapProjection", "optional"), ("SecretProjection", "optional"),
    ("ServiceAccountTokenProjection", "expiration_seconds"),
    # core/v1 services
    ("ServiceSpec", "allocate_load_balancer_node_ports"), ("ServiceSpec", "load_balancer_class"),
    ("ServiceSpec", "internal_traffic_policy"), ("ServiceSpec", "ip_family_policy"),
    ("ServiceSpec", "traffic_distribution"), ("ServicePort", "app_protocol"),
    ("ClientIPConfig", "timeout_seconds"), ("EndpointPort", "app_protocol"),
    ("ConfigMap", "immutable"), ("Secret", "immutable"), ("Event", "count"),
    # discovery/v1
    ("EndpointConditions", "ready"), ("EndpointConditions", "serving"),
    ("EndpointConditions", "terminating"), ("Endpoint", "hostname"), ("Endpoint", "node_name"),
    ("Endpoint", "zone"),
    # meta/v1
    ("ObjectMeta", "deletion_grace_period_seconds"), ("OwnerReference", "controller"),
    ("OwnerReference", "block_owner_deletion"), ("ListMeta", "remaining_item_count"),
    ("DeleteOptions", "grace_period_seconds"), ("DeleteOptions", "orphan_dependents"),
    ("DeleteOptions", "propagation_policy"),
    ("DeleteOptions", "ignore_store_read_error_with_cluster_breaking_potential"),
    ("Preconditions", "uid"), ("Preconditions", "resource_version"),
    ("Status", "code"), ("ScaleSpec", "replicas"), ("ScaleStatus", "replicas"),
}
# The discovery/v1 EndpointPort's scalars are all pointers in Go.
ZERO_KEPT |= {("EndpointPort", f) for f in ("name", "protocol", "port")}


RESERVED = ("type", "continue", "ref", "default")


def norm(field):
    """A field's name with case and underscores gone: k8s-pb writes `pod_cid_rs` where
    k8s-openapi writes `pod_cidrs` (both `podCIDRs`)."""
    return field.replace("_", "").lower()


def registry_dir(prefix):
    hits = sorted(glob.glob(os.path.join(REGISTRY, "*", prefix)))
    if not hits:
        sys.exit(f"{prefix} not found under {REGISTRY}: run `cargo fetch` first")
    return hits[-1]


PB = registry_dir("k8s-pb-0.9.0") + "/src"
API = registry_dir("k8s-openapi-0.29.0") + f"/src/{OPENAPI_VERSION}"

FIELD_RE = re.compile(r"#\[prost\(([^)]*)\)\]\s*pub (r#)?(\w+):\s*([^;]*?),\n", re.S)


def pb_structs(module):
    """{name: [(field, prost attrs, type text)]} of one k8s-pb module."""
    path = os.path.join(PB, module, "mod.rs")
    src = open(path).read()
    out = {}
    for m in re.finditer(r"\npub struct (\w+) \{\n(.*?)\n\}", src, re.S):
        fields = [(f.group(3), f.group(1), re.sub(r"\s+", "", f.group(4)))
                  for f in FIELD_RE.finditer(m.group(2) + "\n")]
        out[m.group(1)] = fields
    return out


def api_structs(module):
    """{lowercase name: (name, {field: type text})} of one k8s-openapi module."""
    out = {}
    for path in glob.glob(os.path.join(API, module, "*.rs")):
        src = open(path).read()
        for m in re.finditer(r"\npub struct (\w+) \{\n(.*?)\n\}", src, re.S):
            fields = {}
            for f in re.finditer(r"^    pub (\w+): (.*),$", m.group(2), re.M):
                fields[norm(f.group(1))] = (f.group(1), f.group(2))
            out[m.group(1).lower()] = (m.group(1), fields)
    return out


def resolve(module, type_text):
    """The (module, struct) pairs a protobuf field type names."""
    refs = []
    for m in re.finditer(r"((?:super::)*(?:\w+::)*)([A-Z]\w*)", type_text):
        path, name = m.group(1), m.group(2)
        if name in ("Option", "Vec", "String", "BTreeMap", "HashMap"):
            continue
        if path.startswith(("::core", "::prost", "::std", "prost", "core")):
            continue
        segs = module.split("/")
        parts = [p for p in path.split("::") if p]
        while parts and parts[0] == "super":
            segs.pop()
            parts.pop(0)
        refs.append(("/".join(segs + parts), name))
    return refs


def main():
    pb_cache, api_cache = {}, {}

    def pb(module):
        if module not in pb_cache:
            pb_cache[module] = pb_structs(module)
        return pb_cache[module]

    def api(module):
        if module not in api_cache:
            api_cache[module] = api_structs(module)
        return api_cache[module]

    seen, order, queue = set(), [], list(ROOTS)
    while queue:
        key = queue.pop(0)
        if key in seen or key in MANUAL:
            continue
        seen.add(key)
        module, name = key
        fields = pb(module).get(name)
        if fields is None:
            sys.exit(f"no protobuf struct {module}::{name}")
        order.append(key)
        for _, _, ty in fields:
            queue.extend(resolve(module, ty))

    lines = [
        "// @generated by scripts/gen-protobuf-conversions.py from k8s-pb 0.9.0 and k8s-openapi",
        f"// 0.29.0 ({OPENAPI_VERSION}). Do not edit by hand: change the script and run it again.",
        "//! Field-by-field conversions between the protobuf and JSON types of every struct the",
        "//! lab's kinds reach (generated; see scripts/gen-protobuf-conversions.py).",
        "",
        "use super::conv::convert;",
        "",
    ]
    lists = []
    for module, name in sorted(order):
        rust_mod = module.replace("/", "::")
        if is_list(name):
            lists.append((rust_mod, name))
            continue
        hit = api(module).get(name.lower())
        if hit is None:
            lines.append(f"// {rust_mod}::{name}: no k8s-openapi struct; not converted")
            continue
        api_name, api_fields = hit
        pairs, inlines, only_pb = [], [], []
        used = set()

        def pair(struct, fname, attrs, api_field, api_type):
            scalar = re.match(r"(string|int32|int64|bool|double|float), optional", attrs)
            required = not api_type.startswith("Option<")
            how = "keep"
            if scalar and not required and (struct, fname) not in ZERO_KEPT:
                how = "unset_if_zero"
            pb_field = f"r#{fname}" if fname in RESERVED else fname
            return f"({pb_field}, {api_field}, {how})"

        for fname, attrs, ty in pb(module)[name]:
            key = norm(fname)
            if key in api_fields:
                api_field, api_type = api_fields[key]
                used.add(key)
                pairs.append(pair(name, fname, attrs, api_field, api_type))
                continue
            # A Go struct embedded with `json:",inline"` is a message of its own in protobuf and
            # flat in JSON: its fields sit on the outer struct.
            inner = [r for r in resolve(module, ty) if r not in MANUAL]
            if attrs.startswith("message") and len(inner) == 1:
                imod, iname = inner[0]
                ifields = pb(imod).get(iname, [])
                if ifields and all(norm(f) in api_fields for f, _, _ in ifields):
                    sub = []
                    for f, a, _ in ifields:
                        api_field, api_type = api_fields[norm(f)]
                        used.add(norm(f))
                        sub.append(pair(iname, f, a, api_field, api_type))
                    inlines.append(
                        f"({fname}, k8s_pb::{imod.replace('/', '::')}::{iname}, [{', '.join(sub)}])"
                    )
                    continue
            only_pb.append(fname)
        only_api = sorted(api_fields[k][0] for k in api_fields if k not in used)
        if only_pb:
            lines.append(f"// {name}: only in protobuf: {', '.join(only_pb)}")
        if only_api:
            lines.append(f"// {name}: only in k8s-openapi: {', '.join(only_api)}")
        lines.append(
            f"convert!(k8s_pb::{rust_mod}::{name}, k8s_openapi::{rust_mod}::{api_name}, "
            f"[{', '.join(pairs)}], [{', '.join(only_api)}], [{', '.join(inlines)}]);"
        )
    lines.append("")
    lines.append("/// The protobuf list types, converted item by item (k8s-openapi has no list structs).")
    lines.append("#[allow(dead_code)]")
    lines.append("pub const LISTS: &[&str] = &[")
    for rust_mod, name in lists:
        lines.append(f'    "{rust_mod}::{name}",')
    lines.append("];")
    lines.append("")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {OUT}: {len(order) - len(lists)} structs, {len(lists)} lists", file=sys.stderr)


if __name__ == "__main__":
    main()
