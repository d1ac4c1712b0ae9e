//! Why a hop happens, in one sentence: [`why`] turns any [`FlowEvent`] into what a guide would
//! say about it ("the ReplicaSet controller creates pods because its ReplicaSet wants 3 and has
//! 2: controllers only write desired state through the API server"), chosen by its verb and by
//! who sends it to whom where that matters; [`decision`] says what a scheduling decision (a
//! `DECIDE` hop's data) found on the chosen node: the filters it passed and the scores that won.
//!
//! Pure and shared: the dashboard's step bar and detail view show these sentences, and the
//! lesson runner prints them. A hop this table does not know gets a general sentence built from
//! its ends ([`why`] never fails); a test scans the sources for every verb they emit and checks
//! that each has its own sentence.

use std::borrow::Cow;

use super::FlowEvent;

/// One sentence saying why `hop` happens.
pub fn why(hop: &FlowEvent) -> Cow<'static, str> {
    sentence(hop).unwrap_or_else(|| general(hop))
}

/// The sentence for a hop no entry of the table names: who asked whom for what.
fn general(hop: &FlowEvent) -> Cow<'static, str> {
    let what = if hop.kind.is_empty() {
        String::new()
    } else {
        format!(" about a {}", hop.kind)
    };
    Cow::Owned(format!(
        "{} sends {} a {}{what}: one step of a story, which the hops before and after it explain.",
        hop.from, hop.to, hop.verb
    ))
}

/// Whether `who` is a scheduler (one replica of several is `scheduler-2`).
fn is_scheduler(who: &str) -> bool {
    who == "scheduler"
        || who
            .strip_prefix("scheduler-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A controller by the name guides give it, from its client name (`controller/deployment`).
fn controller_name(short: &str) -> Cow<'static, str> {
    Cow::Borrowed(match short {
        "deployment" => "the Deployment controller",
        "replicaset" => "the ReplicaSet controller",
        "replicationcontroller" => "the ReplicationController manager",
        "daemonset" => "the DaemonSet controller",
        "statefulset" => "the StatefulSet controller",
        "job" => "the Job controller",
        "cronjob" => "the CronJob controller",
        "endpointslice" => "the EndpointSlice controller",
        "endpoints" => "the Endpoints controller",
        "garbagecollector" => "the garbage collector",
        "nodelifecycle" => "the node lifecycle controller",
        "namespace" => "the namespace controller",
        "serviceaccount" => "the ServiceAccount controller",
        "disruption" => "the disruption controller",
        "resourcequota" => "the ResourceQuota controller",
        "horizontal-pod-autoscaler" => "the HorizontalPodAutoscaler controller",
        "persistentvolume-binder" => "the PersistentVolume controller",
        "pvc-protection" => "the PVC protection controller",
        "pv-protection" => "the PV protection controller",
        "certificate" => "the certificate signer",
        "root-ca-cert-publisher" => "the root CA publisher",
        "clusterrole-aggregation" => "the ClusterRole aggregation controller",
        other => return Cow::Owned(format!("the {other} controller")),
    })
}

/// `s` with its first letter in capitals.
fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `a Pod`, `an Ingress`, or `an object` when the hop names no kind.
fn a(kind: &str) -> String {
    match kind.chars().next() {
        None => "an object".to_owned(),
        Some(c) if "AEIOU".contains(c) => format!("an {kind}"),
        Some(_) => format!("a {kind}"),
    }
}

/// `Pods`, `Ingresses`, `objects`.
fn plural(kind: &str) -> String {
    if kind.is_empty() {
        "objects".to_owned()
    } else if kind.ends_with("ss") || kind.ends_with("ch") {
        format!("{kind}es")
    } else if kind.ends_with('s') {
        kind.to_owned()
    } else if let Some(stem) = kind.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{kind}s")
    }
}

fn owned(s: String) -> Option<Cow<'static, str>> {
    Some(Cow::Owned(s))
}

fn fixed(s: &'static str) -> Option<Cow<'static, str>> {
    Some(Cow::Borrowed(s))
}

fn sentence(hop: &FlowEvent) -> Option<Cow<'static, str>> {
    let (from, to, verb, kind) = (
        hop.from.as_str(),
        hop.to.as_str(),
        hop.verb.as_str(),
        hop.kind.as_str(),
    );
    if verb == "GATE" {
        return owned(format!(
            "Step mode holds the next hop of {from} at its gate until you release it (n), so the \
             story stands still between two hops while you look."
        ));
    }
    if let Some(election) = leader_election(from, verb) {
        return Some(election);
    }
    if from == "orrery" {
        return operator(verb, to);
    }
    if to == "store" {
        return store(verb, kind);
    }
    if from == "apiserver" {
        if verb == "ADMIT" {
            return owned(format!(
                "The API server sends an AdmissionReview to the webhook {to}, whose rules match \
                 this request, and waits for its answer before anything is stored: a mutating \
                 webhook may change the {kind}, a validating one may refuse it."
            ));
        }
        if let Some(kind_of_event) = verb.strip_prefix("WATCH ") {
            return delivery(kind_of_event, to, kind);
        }
    }
    if let Some(node) = from.strip_prefix("kubelet/") {
        if to.starts_with("runtime/") {
            return cri(verb);
        }
        return kubelet(node, verb, kind);
    }
    if from.starts_with("runtime/") {
        return runtime_answer(verb);
    }
    if let Some(qtype) = verb.strip_prefix("DNS ") {
        return dns(qtype);
    }
    if is_scheduler(from) {
        return scheduler(verb, kind);
    }
    if let Some(short) = from.strip_prefix("controller/") {
        return controller(short, verb, kind, &hop.detail);
    }
    if to == "apiserver"
        && matches!(
            verb,
            "ALLOWED" | "PATCHED" | "DENIED" | "FAILED" | "IGNORED"
        )
    {
        return webhook_answer(from, verb);
    }
    if let Some(found) = add_on(from, to, verb, kind) {
        return Some(found);
    }
    client(from, verb, kind)
}

/// `<replica> -> <replica>`, about its Lease: a replica of the scheduler or the controller
/// manager in the leader election.
fn leader_election(from: &str, verb: &str) -> Option<Cow<'static, str>> {
    owned(match verb {
        super::LEADER => format!(
            "{from} now holds its Lease (free, expired, or still its own), so it is the replica \
             that acts; the others stand by and take over if it stops renewing the Lease."
        ),
        super::STANDBY => format!(
            "{from} finds the Lease held and renewed by another replica, so it stands by: it \
             starts none of its work and takes over only if the holder's renewals stop for a \
             lease duration."
        ),
        super::LOST => format!(
            "{from} could not renew its Lease within the renew deadline, so it stops acting at \
             once (another replica may lead by now) and competes for the Lease again."
        ),
        super::RESIGN => format!(
            "{from} gives its Lease up on its way out (it was stopped cleanly, or the cluster goes \
             down), so the next leader takes it at once instead of waiting for it to expire."
        ),
        _ => return None,
    })
}

/// `orrery -> <component>`: the operator stops or starts a component.
fn operator(verb: &str, to: &str) -> Option<Cow<'static, str>> {
    match verb {
        "STOP" => owned(format!(
            "The operator stopped {to} (orrery component stop, or kill: a crash that gives \
             nothing back): everything else keeps running on what it already has, so you can \
             see which work needs {to} and which does not."
        )),
        "START" => owned(format!(
            "The operator started {to} again: it lists and watches what it needs from the API \
             server to rebuild its state and catches up on what changed while it was away."
        )),
        _ => None,
    }
}

/// `apiserver -> store`: the API server is the store's only client.
fn store(verb: &str, kind: &str) -> Option<Cow<'static, str>> {
    let kinds = plural(kind);
    match verb {
        "CREATE" => owned(format!(
            "The API server writes the new {kind} to the store under its key: the store's \
             revision grows by one and becomes the object's resourceVersion, and every watch on \
             {kinds} will hear of it."
        )),
        "UPDATE" => owned(format!(
            "The API server writes the changed {kind} back to the store at a new revision, only \
             if nobody wrote it since it was read (optimistic concurrency), and watchers of \
             {kinds} get a MODIFIED event."
        )),
        "DELETE" => owned(format!(
            "The API server removes the {kind}'s key from the store, and every watch on {kinds} \
             gets a DELETED event with its last state."
        )),
        "GET" => owned(format!(
            "The API server reads the {kind} from the store to answer a GET: the store is the \
             one place the cluster's state lives, and only the API server reads it."
        )),
        "RANGE" => owned(format!(
            "The API server reads a range of keys from the store (a page of a LIST of {kinds}) \
             at one revision, so the list is a consistent snapshot a watch can resume from."
        )),
        "WATCH" => owned(format!(
            "The API server watches the store's {kinds} from a revision: one stream it fans out \
             to every client watching them, so the store serves one watcher, not hundreds."
        )),
        "FAILED" => fixed(
            "The store could not do what the API server asked (an etcd cluster without a quorum \
             of its members, a member gone), so the request fails with an error and nothing \
             changed; writes go on once a quorum answers again.",
        ),
        "RESTORE" => fixed(
            "The API server writes a snapshot's keys back into the store (orrery store snapshot \
             restore): objects return to how they were at the snapshot, the history before is \
             compacted, and every watch ends so its client lists again.",
        ),
        _ => None,
    }
}

/// `apiserver -> <watcher>`: a watch event delivered.
fn delivery(event: &str, to: &str, kind: &str) -> Option<Cow<'static, str>> {
    if event == "SYNC" {
        return owned(format!(
            "The API server replays the current {} to {to} as its watch begins (the initial \
             events), so its cache starts complete before the changes follow.",
            plural(kind)
        ));
    }
    let happened = match event {
        "ADDED" => "appeared",
        "MODIFIED" => "changed",
        "DELETED" => "is gone",
        _ => return None,
    };
    if is_scheduler(to) && kind == "Pod" {
        return owned(format!(
            "The API server tells the scheduler that a pod {happened}: a pod with no node joins \
             its scheduling queue, and a pod bound or gone updates its cache of what each node \
             holds."
        ));
    }
    if to.starts_with("kubelet/") && kind == "Pod" {
        return owned(format!(
            "The API server tells the kubelet that a pod bound to its node {happened} (it \
             watches only pods with its spec.nodeName), so the kubelet syncs it: sandbox, image, \
             containers, or their teardown."
        ));
    }
    if let Some(short) = to.strip_prefix("controller/") {
        return owned(format!(
            "The API server tells {} that {} {happened}: its informer updates the shared cache \
             and queues the key of the object to reconcile, so controllers react to changes \
             instead of polling.",
            controller_name(short),
            a(kind)
        ));
    }
    if to.starts_with("kube-proxy/") {
        return owned(format!(
            "The API server tells kube-proxy that {} {happened}, so it reprograms this node's \
             rules for the Services and their ready endpoints.",
            a(kind)
        ));
    }
    owned(format!(
        "The API server tells {to}, which watches {}, that one {happened}: watches are how every \
         component learns about changes without polling.",
        plural(kind)
    ))
}

/// `kubelet/<node> -> runtime/<node>`: the kubelet's CRI calls.
fn cri(verb: &str) -> Option<Cow<'static, str>> {
    match verb {
        "RUN SANDBOX" => fixed(
            "The kubelet asks the container runtime (over the CRI) for the pod's sandbox first: \
             the network namespace and IP address all of the pod's containers share.",
        ),
        "PULL IMAGE" => fixed(
            "The kubelet asks the runtime to pull the container's image because this node does \
             not have it yet (imagePullPolicy IfNotPresent or Always).",
        ),
        "CREATE CONTAINER" => fixed(
            "The kubelet has the runtime create the container in the pod's sandbox from the pod \
             spec: command, environment, volume mounts and resource limits.",
        ),
        "START CONTAINER" => fixed(
            "The kubelet has the runtime start the container's process, init containers first \
             and one at a time, then the app containers.",
        ),
        "STOP CONTAINER" => fixed(
            "The kubelet has the runtime stop the container: SIGTERM first, then SIGKILL if it \
             is still running when the grace period ends.",
        ),
        "REMOVE CONTAINER" => fixed(
            "Before it starts the container again, the kubelet has the runtime remove the one \
             that exited, and the container's restart count grows by one.",
        ),
        "STOP SANDBOX" => fixed(
            "The kubelet stops the pod's sandbox, killing whatever still runs in it and taking \
             down its network, because the pod is finished or deleted.",
        ),
        "REMOVE SANDBOX" => fixed(
            "The kubelet removes the pod's sandbox and with it what is left of the pod on this \
             node.",
        ),
        "EXEC" => fixed(
            "kubectl exec reaches the kubelet through the API server (pods/exec), and the kubelet \
             has the runtime run the command inside the running container.",
        ),
        "ATTACH" => fixed(
            "kubectl attach reaches the kubelet through the API server (pods/attach), and the \
             kubelet connects the stream to the running container's standard input and output.",
        ),
        _ => None,
    }
}

/// `runtime/<node> -> kubelet/<node>`: the runtime's answers.
fn runtime_answer(verb: &str) -> Option<Cow<'static, str>> {
    match verb {
        "SANDBOX READY" => fixed(
            "The runtime has the pod's sandbox ready with its IP address, so the kubelet can pull \
             images and start the containers in it.",
        ),
        "SANDBOX FAILED" => fixed(
            "The runtime could not make the pod's sandbox (its namespaces or network), so no \
             container can start; the kubelet tries again on its next sync.",
        ),
        "IMAGE PULLED" => fixed(
            "The runtime has pulled the image onto the node, so the kubelet can create the \
             container from it.",
        ),
        "PULL FAILED" => fixed(
            "The runtime could not pull the image (a wrong name, or no access to the registry), \
             so the container waits in ErrImagePull and the kubelet retries with back-off.",
        ),
        "CONTAINER EXITED" => fixed(
            "The container's process ended: the kubelet records its exit code and reason, and \
             the pod's restartPolicy decides whether it starts it again.",
        ),
        _ => None,
    }
}

/// `kubelet/<node> -> apiserver`: status writes, Events by reason, and the kubelet's requests.
fn kubelet(node: &str, verb: &str, kind: &str) -> Option<Cow<'static, str>> {
    let sentence = match verb {
        "STATUS" => {
            "The kubelet writes the pod's status because it changed (phase, ready containers, \
             IP): it is the one component that knows what really runs on its node, and \
             controllers, Services and kubectl read it from there."
        }
        "PULLING" => {
            "The kubelet records an Event that it is pulling the image, because the node does \
             not have it yet."
        }
        "PULLED" => {
            "The kubelet records an Event that the image is on the node (pulled now, or already \
             present), so the container can be created."
        }
        "CREATED" => {
            "The kubelet records an Event that the runtime created the container from the pod \
             spec."
        }
        "STARTED" => {
            "The kubelet records an Event that the container's process started; the pod is \
             Ready only once its readiness probes pass."
        }
        "KILLING" => {
            "The kubelet stops the container (the pod is being deleted, or its liveness probe \
             failed) and records an Event: SIGTERM now, SIGKILL after the grace period."
        }
        "BACKOFF" => {
            "The last attempt to start the container or pull its image failed, so the kubelet \
             waits before the next one, doubling the delay up to five minutes \
             (CrashLoopBackOff, ImagePullBackOff)."
        }
        "FAILED" => {
            "A step of starting the container failed (its image, its configuration or the \
             runtime), so the kubelet records why and tries again with back-off."
        }
        "ERRIMAGENEVERPULL" => {
            "The image is not on the node and the container's imagePullPolicy is Never, so the \
             kubelet may not pull it and the container cannot start."
        }
        "UNHEALTHY" => {
            "A probe failed: a failing liveness probe gets the container restarted, a failing \
             readiness probe takes the pod out of its Services' endpoints."
        }
        "FAILEDMOUNT" => {
            "The kubelet could not mount one of the pod's volumes (a missing ConfigMap, Secret \
             or claim), so the pod's containers wait until it can."
        }
        "FAILEDPRESTOPHOOK" => {
            "The container's preStop hook failed; the kubelet goes on stopping the container all \
             the same."
        }
        _ => {
            return match (verb, kind) {
                ("PUT" | "PATCH" | "UPDATE", "Lease") => owned(format!(
                    "The kubelet of {node} renews its node's Lease every quarter of the lease's \
                     duration (ten seconds by default): that heartbeat is how the node lifecycle \
                     controller knows the node is alive."
                )),
                ("POST", "Node") => owned(format!(
                    "The kubelet registers {node} with the API server, which is all it takes \
                     for a machine to join the cluster: the scheduler can then place pods there."
                )),
                ("PATCH" | "PUT", "Node") => owned(format!(
                    "The kubelet reports {node}'s status (its conditions, capacity and \
                     addresses), so the scheduler and the node lifecycle controller see the node \
                     as it is."
                )),
                ("PATCH" | "PUT", "Pod") => fixed(
                    "The kubelet writes the pod's status through the status subresource: it is \
                     the only component that knows what runs on its node.",
                ),
                ("WATCH" | "LIST", "Pod") => fixed(
                    "The kubelet watches only the pods bound to its node (fieldSelector \
                     spec.nodeName), which is how it learns what to run.",
                ),
                _ => client("the kubelet", verb, kind),
            };
        }
    };
    fixed(sentence)
}

/// `scheduler -> ...`: the scheduling cycle and its writes.
fn scheduler(verb: &str, kind: &str) -> Option<Cow<'static, str>> {
    match verb {
        "DECIDE" => fixed(
            "The scheduler runs its filters on the nodes, scores those that pass and picks the \
             highest total, all in its own memory before it writes anything.",
        ),
        "BIND" => fixed(
            "The scheduler binds the pod to the node it chose with a Binding (it sets \
             spec.nodeName and nothing else): the kubelet on that node sees the pod in its watch \
             and runs it.",
        ),
        "BIND VOLUME" => fixed(
            "Before it binds the pod, the scheduler's VolumeBinding plugin binds the pod's claim \
             to a volume the chosen node can reach, so the pod and its storage meet.",
        ),
        "SELECT NODE" => fixed(
            "The scheduler marks a WaitForFirstConsumer claim with the chosen node \
             (volume.kubernetes.io/selected-node), so its volume is provisioned where the pod \
             will run.",
        ),
        "UNSCHEDULABLE" => fixed(
            "No node passed the filters, so the scheduler sets the pod's PodScheduled condition \
             to False (reason Unschedulable) and tries again when the cluster changes.",
        ),
        "POST" if kind == "Pod" || kind == "Binding" => fixed(
            "The scheduler posts the Binding to the pod's binding subresource: the API server \
             sets spec.nodeName, the only write the scheduler makes to a pod.",
        ),
        "WATCH" | "LIST" => owned(format!(
            "The scheduler lists and watches {} to keep its own cache of the cluster, so it \
             decides without asking the API server for every pod.",
            plural(kind)
        )),
        _ => client("the scheduler", verb, kind),
    }
}

/// `controller/<name> -> apiserver`: the controllers write desired state.
fn controller(short: &str, verb: &str, kind: &str, detail: &str) -> Option<Cow<'static, str>> {
    let who = controller_name(short);
    let who_cap = capitalised(&who);
    let sentence: Cow<'static, str> = match (short, verb, kind) {
        (_, "SCALE UP", _) => {
            let counts = counts(detail)
                .map(|(have, want)| format!(" wants {want} and has {have}"))
                .unwrap_or_else(|| " wants more pods than exist".to_owned());
            Cow::Owned(format!(
                "{who_cap} creates pods because its {kind}{counts}: controllers only write \
                 desired state through the API server, and the scheduler and kubelets do the \
                 rest."
            ))
        }
        (_, "SCALE DOWN", _) => {
            let counts = counts(detail)
                .map(|(have, want)| format!(" wants {want} and has {have}"))
                .unwrap_or_else(|| " has more pods than it wants".to_owned());
            Cow::Owned(format!(
                "{who_cap} deletes pods because its {kind}{counts}, the least valuable first \
                 (unscheduled, then not ready, then the newest)."
            ))
        }
        ("deployment", "SCALE", _) => Cow::Borrowed(
            "The Deployment controller resizes a ReplicaSet: the one with the current pod \
             template grows while the old ones shrink, within maxSurge and maxUnavailable, which \
             is how a rollout proceeds.",
        ),
        ("horizontal-pod-autoscaler", "SCALE", _) => Cow::Borrowed(
            "The HorizontalPodAutoscaler controller writes the replicas it computed to the \
             target's scale subresource; the target's own controller then adds or removes pods.",
        ),
        ("horizontal-pod-autoscaler", "DECIDE", _) => Cow::Borrowed(
            "The HorizontalPodAutoscaler controller compares the measured usage with its target \
             and computes the replicas wanted (current × usage ÷ target, rounded up), within min \
             and max and its stabilization window.",
        ),
        ("deployment", "CREATE", "ReplicaSet") => Cow::Borrowed(
            "The Deployment controller creates a ReplicaSet for the Deployment's pod template \
             (named after the template's hash); the ReplicaSet controller then creates the pods.",
        ),
        ("daemonset", "CREATE", "Pod") => Cow::Borrowed(
            "The DaemonSet controller creates a pod for an eligible node that lacks one, pinned \
             to that node by node affinity; the scheduler still binds it.",
        ),
        ("statefulset", "CREATE", "Pod") => Cow::Borrowed(
            "The StatefulSet controller creates the pod of the next ordinal, with its stable \
             name and storage, once the ones before it are Running and Ready (OrderedReady).",
        ),
        ("statefulset", "CREATE", "PersistentVolumeClaim") => Cow::Borrowed(
            "The StatefulSet controller creates the pod's claim from volumeClaimTemplates before \
             the pod, so each ordinal keeps its own storage across restarts.",
        ),
        (_, "CREATE", "ControllerRevision") => Cow::Owned(format!(
            "{who_cap} stores the current pod template as a ControllerRevision: the history a \
             rolling update compares pods with and `kubectl rollout undo` goes back to."
        )),
        (_, "UPDATE", "ControllerRevision") => Cow::Owned(format!(
            "{who_cap} renumbers an older ControllerRevision that matches the template again (a \
             rollback), so the newest revision is always the highest."
        )),
        (_, "DELETE", "ControllerRevision") => Cow::Owned(format!(
            "{who_cap} prunes ControllerRevisions beyond revisionHistoryLimit that no pod uses \
             any more."
        )),
        ("endpointslice", "CREATE", _) => Cow::Borrowed(
            "The EndpointSlice controller creates a slice listing the addresses and readiness of \
             the pods the Service selects, which kube-proxy and the cluster DNS read.",
        ),
        ("endpointslice", "UPDATE", _) => Cow::Borrowed(
            "The EndpointSlice controller updates the Service's slice as its pods come, go, or \
             change readiness, so traffic follows the ready pods.",
        ),
        ("endpointslice", "DELETE", _) => Cow::Borrowed(
            "The EndpointSlice controller deletes a slice its Service no longer needs (the \
             Service is gone, or has fewer endpoints).",
        ),
        ("endpoints", "CREATE", _) => Cow::Borrowed(
            "The Endpoints controller mirrors the Service's pod addresses into a legacy core/v1 \
             Endpoints object of the same name, which older clients still read.",
        ),
        ("endpoints", "UPDATE", _) => Cow::Borrowed(
            "The Endpoints controller updates the Service's legacy Endpoints as its pods come, \
             go, or change readiness.",
        ),
        ("endpoints", "DELETE", _) => Cow::Borrowed(
            "The Endpoints controller deletes the Endpoints of a Service that is gone.",
        ),
        ("serviceaccount", "CREATE", _) => Cow::Borrowed(
            "The ServiceAccount controller gives every namespace its default ServiceAccount, \
             which a pod runs as when it names none.",
        ),
        ("daemonset", "DELETE", "Pod") => Cow::Borrowed(
            "The DaemonSet controller deletes a daemon pod no longer wanted on its node (the \
             node no longer fits) or out of date in a rolling update.",
        ),
        ("statefulset", "DELETE", "Pod") => Cow::Borrowed(
            "The StatefulSet controller deletes a pod to scale down (the highest ordinal first) \
             or to replace it with the updated template.",
        ),
        ("statefulset", "UPDATE", "Pod") => Cow::Borrowed(
            "The StatefulSet controller repairs a pod that lost its identity labels or \
             ownership, so it counts as its ordinal again.",
        ),
        ("statefulset", "UPDATE", "PersistentVolumeClaim") => Cow::Borrowed(
            "The StatefulSet controller sets the claim's owner as its \
             persistentVolumeClaimRetentionPolicy says, so the claim is kept or deleted with the \
             pod or the set.",
        ),
        ("garbagecollector", "DELETE", _) => Cow::Borrowed(
            "The garbage collector deletes an object whose owners are all gone: cascading \
             deletion follows ownerReferences, not any controller's own logic.",
        ),
        ("garbagecollector", "PATCH", _) => Cow::Borrowed(
            "The garbage collector removes ownerReferences to owners that were deleted with \
             orphans kept, or its finalizer once an owner's dependents are dealt with.",
        ),
        ("nodelifecycle", "UPDATE", _) => Cow::Borrowed(
            "The node lifecycle controller marks the node's Ready condition Unknown because its \
             kubelet stopped renewing the node's Lease within the grace period.",
        ),
        ("nodelifecycle", "PATCH", _) => Cow::Borrowed(
            "The node lifecycle controller taints the node (not-ready or unreachable), so the \
             scheduler avoids it and pods that do not tolerate the taint are evicted.",
        ),
        ("nodelifecycle", "DELETE", _) => Cow::Borrowed(
            "The node lifecycle controller evicts the pod because its node has been unreachable \
             longer than the pod tolerates (NoExecute taint), so its controller can replace it \
             elsewhere.",
        ),
        (_, "ADOPT", _) => Cow::Owned(format!(
            "{who_cap} adopts an orphan {kind} whose labels match its selector by making itself \
             the controller in its ownerReferences."
        )),
        ("pvc-protection", "PROTECT", _) => Cow::Borrowed(
            "The PVC protection controller adds the kubernetes.io/pvc-protection finalizer, so a \
             claim a pod uses cannot be deleted from under it.",
        ),
        ("pv-protection", "PROTECT", _) => Cow::Borrowed(
            "The PV protection controller adds the kubernetes.io/pv-protection finalizer, so a \
             volume bound to a claim cannot be deleted from under it.",
        ),
        ("pvc-protection", "RELEASE", _) => Cow::Borrowed(
            "No pod uses the claim any more, so the PVC protection controller removes its \
             finalizer and the claim's deletion can finish.",
        ),
        ("pv-protection", "RELEASE", _) => Cow::Borrowed(
            "The volume is no longer bound, so the PV protection controller removes its \
             finalizer and the volume's deletion can finish.",
        ),
        (_, "RELEASE", _) => Cow::Owned(format!(
            "{who_cap} releases a {kind} whose labels no longer match its selector by removing \
             itself from its ownerReferences; the {kind} lives on as an orphan."
        )),
        ("job", "CREATE PODS", _) => Cow::Borrowed(
            "The Job controller creates pods until as many run as parallelism allows and \
             completions still need.",
        ),
        ("job", "DELETE PODS", _) => Cow::Borrowed(
            "The Job controller deletes the job's active pods: it finished, failed, was \
             suspended, or ran past activeDeadlineSeconds.",
        ),
        ("cronjob", "CREATE JOB", _) => Cow::Borrowed(
            "A scheduled time of the CronJob has come, so the CronJob controller creates a Job \
             from its jobTemplate (unless concurrencyPolicy forbids it).",
        ),
        ("cronjob", "DELETE JOB", _) => Cow::Borrowed(
            "The CronJob controller deletes a Job: a finished one beyond the history limits, or \
             the running one that concurrencyPolicy Replace replaces.",
        ),
        (_, "UPDATE STATUS", _) => Cow::Owned(format!(
            "{who_cap} records what it observed in the {kind}'s status ({}), which kubectl and \
             other controllers read.",
            match short {
                "resourcequota" => "how much of each quota the namespace uses",
                "disruption" => "how many pods are healthy and how many disruptions are allowed",
                "job" => "its active, succeeded and failed pods and its conditions",
                "cronjob" => "its active jobs and when it last scheduled one",
                _ => "replicas, conditions and observedGeneration",
            }
        )),
        ("namespace", "DELETECOLLECTION", _) => Cow::Borrowed(
            "The namespace is being deleted, so the namespace controller deletes every object of \
             each kind in it before the namespace itself can go.",
        ),
        ("namespace", "FINALIZE", _) => Cow::Borrowed(
            "The namespace is empty, so the namespace controller removes its kubernetes \
             finalizer and the API server deletes it.",
        ),
        ("clusterrole-aggregation", "AGGREGATE", _) => Cow::Borrowed(
            "The ClusterRole aggregation controller fills an aggregated ClusterRole (admin, edit, \
             view) with the rules of every ClusterRole its selectors match.",
        ),
        ("root-ca-cert-publisher", "PUBLISH", _) => Cow::Borrowed(
            "The root CA publisher writes the cluster's CA certificate into every namespace's \
             kube-root-ca.crt ConfigMap, so pods can check they talk to the real API server.",
        ),
        ("certificate", "SIGN", _) => Cow::Borrowed(
            "The certificate signer signs an approved CertificateSigningRequest with the \
             cluster's CA and puts the certificate in its status.",
        ),
        ("certificate", "FAIL", _) => Cow::Borrowed(
            "The certificate signer cannot sign this approved request (a signer or usages it \
             does not serve), so it marks the request Failed.",
        ),
        ("persistentvolume-binder", "ASSIGN CLASS", _) => Cow::Borrowed(
            "The claim names no StorageClass, so the PersistentVolume controller gives it the \
             default class and provisioning can follow.",
        ),
        ("persistentvolume-binder", "PROVISION", _) => Cow::Borrowed(
            "No existing volume fits the claim, so the PersistentVolume controller asks its \
             class's provisioner for a new one (an annotation the provisioner watches for).",
        ),
        ("persistentvolume-binder", "BIND", _) => Cow::Owned(format!(
            "The PersistentVolume controller binds the claim and the volume to each other (the \
             volume's claimRef, the claim's volumeName): this {kind}'s half of the pair."
        )),
        ("persistentvolume-binder", "UNBIND", _) => Cow::Borrowed(
            "The volume's claim is gone, so the PersistentVolume controller releases the volume \
             (phase Released) and its reclaim policy decides what happens to the data.",
        ),
        ("persistentvolume-binder", "STATUS", _) => Cow::Owned(format!(
            "The PersistentVolume controller records the {kind}'s phase (Pending, Bound, \
             Released) in its status, as kubectl get shows."
        )),
        (_, "WATCH" | "LIST", _) => Cow::Owned(format!(
            "{who_cap}'s informer lists, then watches, {}: the controllers share one cache per \
             kind that the API server keeps current, and never read the store.",
            plural(kind)
        )),
        (_, "POST" | "CREATE", _) => Cow::Owned(format!(
            "{who_cap} creates {} its owner's spec calls for: controllers only write desired \
             state through the API server, like any client.",
            a(kind)
        )),
        (_, "PUT" | "PATCH" | "UPDATE", _) => Cow::Owned(format!(
            "{who_cap} changes {} to move the cluster towards what its owner asks for, through \
             the API server like any client.",
            a(kind)
        )),
        (_, "DELETE", _) => Cow::Owned(format!(
            "{who_cap} deletes {} its owner no longer wants, through the API server like any \
             client.",
            a(kind)
        )),
        _ => return None,
    };
    Some(sentence)
}

/// `(have, want)` from a ReplicaSet controller's detail: `2 of 3 pods exist: creating 1`.
fn counts(detail: &str) -> Option<(u64, u64)> {
    let (have, rest) = detail.split_once(" of ")?;
    let want = rest.split_whitespace().next()?;
    Some((have.trim().parse().ok()?, want.parse().ok()?))
}

/// `<webhook> -> apiserver`: an admission webhook's answer.
fn webhook_answer(from: &str, verb: &str) -> Option<Cow<'static, str>> {
    owned(match verb {
        "ALLOWED" => format!(
            "The webhook {from} allows the request unchanged, so admission goes on to the next \
             webhook or to validation and the store."
        ),
        "PATCHED" => format!(
            "The mutating webhook {from} answers with a JSON patch, which the API server applies \
             to the object before the next webhook and validation see it."
        ),
        "DENIED" => format!(
            "The webhook {from} refuses the request, so the API server answers the client with \
             the webhook's message and nothing is stored."
        ),
        "FAILED" => format!(
            "The webhook {from} could not be called or gave no valid answer, and its \
             failurePolicy is Fail, so the request is refused."
        ),
        "IGNORED" => format!(
            "The webhook {from} could not be called, but its failurePolicy is Ignore, so the \
             request goes on as if it had allowed it."
        ),
        _ => return None,
    })
}

/// The cluster DNS answering a pod.
fn dns(qtype: &str) -> Option<Cow<'static, str>> {
    owned(match qtype {
        "A" | "AAAA" => format!(
            "A pod's resolver (its /etc/resolv.conf names the cluster DNS) asks for a name's {qtype} \
             record: a Service answers with its ClusterIP, a headless one with its ready pods' \
             IPs, from the Services and EndpointSlices the DNS server watches."
        ),
        "SRV" => "A pod asks the cluster DNS for SRV records: a named port of a Service answers \
                  with its port number and the Service's (or each ready pod's) name."
            .to_owned(),
        "PTR" => "A pod asks the cluster DNS which name an IP address has: a Service's ClusterIP \
                  or a pod's IP maps back to its DNS name."
            .to_owned(),
        other => format!(
            "A pod asks the cluster DNS for {other} records of a name, which it answers from the \
             Services and endpoints it watches (or forwards when the name is outside the cluster)."
        ),
    })
}

/// The add-ons: kube-proxy, the ingress and service load balancer, the provisioner, the cluster
/// DNS, the metrics server and the API server's own reconcilers.
fn add_on(from: &str, to: &str, verb: &str, kind: &str) -> Option<Cow<'static, str>> {
    if from.starts_with("kube-proxy/") && verb == "SYNC" {
        return fixed(
            "kube-proxy rewrites this node's nftables rules from the Services and EndpointSlices \
             it watches, so a packet to a Service's IP goes to one of its ready endpoints.",
        );
    }
    if from.starts_with("kube-proxy/") && matches!(verb, "WATCH" | "LIST") {
        return owned(format!(
            "kube-proxy lists and watches {} to know which Services exist and where their ready \
             endpoints are.",
            plural(kind)
        ));
    }
    let sentence = match (from, verb) {
        ("ingress-controller", "SYNC") => {
            "The ingress controller rebuilds its routing table from the Ingresses, their \
             Services and endpoints, so each host and path reaches the right pods."
        }
        ("ingress-controller", "STATUS") => {
            "The ingress controller writes the address it serves the Ingress on into the \
             Ingress's status, as kubectl get ingress shows."
        }
        ("ingress-controller", "CREATE") => {
            "The ingress controller registers its IngressClass, which an Ingress names to be \
             served by it."
        }
        ("service-lb-controller", "ASSIGN") => {
            "The service load balancer gives the LoadBalancer Service an external address, \
             listens on its ports and writes the address into status.loadBalancer.ingress."
        }
        ("service-lb-controller", "RELEASE") => {
            "The service load balancer frees the Service's external address: the Service is gone \
             or no longer of type LoadBalancer."
        }
        ("local-path-provisioner", "PROVISION") => {
            "The provisioner makes a directory on a node for the claim and creates the \
             PersistentVolume that points at it, which the PersistentVolume controller then \
             binds."
        }
        ("local-path-provisioner", "RESIZE") => {
            "The claim asks for more storage than its volume has, so the provisioner grows the \
             volume and records its new capacity."
        }
        ("local-path-provisioner", "DELETE") => {
            "The volume was released and its reclaim policy is Delete, so the provisioner \
             removes its data and the PersistentVolume."
        }
        ("local-path-provisioner", "CREATE") => {
            "The provisioner creates the default StorageClass that names it, so claims with no \
             class get volumes from it."
        }
        ("kube-dns", "CREATE") => {
            "The cluster DNS creates its own Service (kube-system/kube-dns) at the fixed address \
             every pod's /etc/resolv.conf names as its nameserver."
        }
        ("kube-dns", "UPDATE") => {
            "The cluster DNS keeps its Service's ports and endpoints pointing at the DNS server, \
             so the nameserver address pods use keeps answering."
        }
        ("metrics-server", "SCRAPE") => {
            "The metrics server reads every kubelet's resource metrics (CPU and memory counters) \
             through the API server's node proxy and turns them into the rates kubectl top and \
             the HorizontalPodAutoscaler use."
        }
        ("kube-apiserver/endpoint-reconciler", "CREATE") => {
            "The API server creates the default/kubernetes Service, so pods reach the API at a \
             stable address in the cluster."
        }
        ("kube-apiserver/endpoint-reconciler", "UPDATE") => {
            "The API server keeps the endpoints of the default/kubernetes Service pointing at its \
             own address and port."
        }
        ("client", "CONNECT") => {
            "A client connects to a LoadBalancer Service's external address, and the service \
             load balancer forwards the connection to a node's NodePort (or straight to a ready \
             endpoint)."
        }
        ("client", _) if to == "ingress-controller" => {
            "An HTTP request reaches the ingress controller, which matches its host and path \
             against the Ingress rules and proxies it to a ready endpoint of the backend Service."
        }
        _ => return None,
    };
    fixed(sentence)
}

/// A client's request to the API server (kubectl, the dashboard, any API client; `from` is its
/// name, or words such as "the kubelet").
fn client(from: &str, verb: &str, kind: &str) -> Option<Cow<'static, str>> {
    // Sentences start with who asks: a component's or program's own name, or words.
    let who_cap = match from {
        "client" => "A client".to_owned(),
        "dashboard" => "The dashboard".to_owned(),
        "the kubelet" | "the scheduler" => capitalised(from),
        name => name.to_owned(),
    };
    let object = a(kind);
    if kind == "Lease" && matches!(verb, "POST" | "PUT" | "PATCH") {
        return owned(format!(
            "{who_cap} takes or renews a Lease: a kubelet's Lease is its node's heartbeat, and a \
             scheduler's or controller manager's is its claim to lead, so only the holder acts."
        ));
    }
    owned(match verb {
        "POST" => format!(
            "{who_cap} asks the API server to create {object}: it is authenticated, authorized, \
             admitted and validated before it is stored, and nothing runs until a controller \
             watching {} sees it.",
            plural(kind)
        ),
        "GET" => format!(
            "{who_cap} reads {object}: the API server checks it may, then answers from the store."
        ),
        "LIST" => format!(
            "{who_cap} lists the {} it may see, at one revision of the store, which is where a \
             watch can then start.",
            plural(kind)
        ),
        "WATCH" => format!(
            "{who_cap} opens a watch: the API server streams every later change to {} as \
             ADDED, MODIFIED and DELETED events, so nobody needs to poll.",
            plural(kind)
        ),
        "PUT" => format!(
            "{who_cap} replaces {object} whole; the API server takes it only if its \
             resourceVersion is still the stored one, so concurrent writers cannot silently \
             overwrite each other."
        ),
        "PATCH" => format!(
            "{who_cap} changes part of {object}: the API server merges the patch (or applies it \
             server-side) into the stored object and writes the result at a new revision."
        ),
        "DELETE" => format!(
            "{who_cap} deletes {object}: the API server marks it with a deletionTimestamp, and \
             its finalizers, the kubelet and the garbage collector finish the job."
        ),
        "FORBIDDEN" => format!(
            "The API server refuses the request of {from}: it knows who asks, but no RBAC rule \
             allows this verb on this resource, so it answers 403 Forbidden and reads nothing."
        ),
        _ => return None,
    })
}

/// What a scheduling decision (the data of a `DECIDE` hop, `scheduler::run::Decision` as JSON)
/// found: on the chosen node, the filters it passed and its winning scores against the
/// runner-up, and the nodes the filters rejected; or why no node fits. `None` if `decision` is
/// not one.
pub fn decision(decision: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let empty = serde_json::Map::new();
    let rejected = decision
        .get("rejected")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let rejections: Vec<String> = rejected
        .iter()
        .map(|(node, r)| {
            let reasons: Vec<&str> = r["reasons"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let plugin = r["plugin"].as_str().unwrap_or("a filter");
            if reasons.is_empty() {
                format!("{node} by {plugin}")
            } else {
                format!("{node} by {plugin} ({})", reasons.join("; "))
            }
        })
        .collect();
    let rejected_words = |lead: &str| -> String {
        const SHOWN: usize = 3;
        let mut words = rejections
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if rejections.len() > SHOWN {
            words.push_str(&format!(" and {} more", rejections.len() - SHOWN));
        }
        format!("{lead}{words}")
    };
    let Some(chosen) = decision.get("chosen").and_then(Value::as_str) else {
        let message = decision.get("message").and_then(Value::as_str)?;
        return Some(if rejections.is_empty() {
            format!("no node fits: {message}")
        } else {
            rejected_words(&format!("no node fits ({message}); rejected: "))
        });
    };
    let totals = decision
        .get("totals")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let total = totals.get(chosen).and_then(Value::as_i64).unwrap_or(0);
    let mut parts: Vec<(String, i64)> = decision["scores"][chosen]
        .as_object()
        .map(|plugins| {
            plugins
                .iter()
                .map(|(plugin, s)| {
                    let weighted =
                        s["normalized"].as_i64().unwrap_or(0) * s["weight"].as_i64().unwrap_or(1);
                    (plugin.clone(), weighted)
                })
                .filter(|(_, weighted)| *weighted != 0)
                .collect()
        })
        .unwrap_or_default();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut text = format!(
        "{chosen} passed every filter ({}) and scored {total}",
        crate::scheduler::run::FILTERS.join(", ")
    );
    if !parts.is_empty() {
        let parts: Vec<String> = parts.iter().map(|(p, s)| format!("{p} {s}")).collect();
        text.push_str(&format!(" ({})", parts.join(", ")));
    }
    let runner_up = totals
        .iter()
        .filter(|(node, _)| node.as_str() != chosen)
        .filter_map(|(node, t)| Some((node, t.as_i64()?)))
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)));
    match runner_up {
        Some((node, score)) => text.push_str(&format!(" against {node}'s {score}")),
        None if decision["feasible"].as_u64() == Some(1) => {
            text.push_str(", the only node that passed")
        }
        None => {}
    }
    if !rejections.is_empty() {
        text.push_str(&rejected_words("; rejected: "));
    }
    Some(text)
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
