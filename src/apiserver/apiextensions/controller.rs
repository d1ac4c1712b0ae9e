//! The controllers apiextensions-apiserver runs inside kube-apiserver, over a loopback client
//! of the same server (so each of their writes is an ordinary request on the flow):
//!
//! - the naming controller (`pkg/controller/status`): a CRD's names are accepted unless
//!   another CRD of its group has taken one (`NamesAccepted`), and `status.acceptedNames`
//!   follows;
//! - the establishing controller (`pkg/controller/establish`): once its names are accepted, a
//!   CRD is `Established` and its resource is served;
//! - the finalizer controller (`pkg/controller/finalizer`): a CRD being deleted has every one
//!   of its objects deleted (`Terminating`), then loses its cleanup finalizer and goes.

use std::sync::{Arc, Weak};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition, CustomResourceDefinitionNames,
};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;

use super::served::{CLEANUP_FINALIZER, condition_true};
use crate::apiserver::ApiServer;

/// The component name the controllers' requests carry.
pub(crate) const COMPONENT: &str = "apiextensions-controller";

/// Runs the controllers until the API server is dropped.
pub(crate) async fn run(api: Weak<ApiServer>) {
    let mut changed = {
        let Some(api) = api.upgrade() else { return };
        let store = api.store_arc();
        api.crds().definitions(&store).await.subscribe()
    };
    loop {
        {
            let Some(api) = api.upgrade() else { return };
            reconcile_all(&api).await;
        }
        // A CRD whose objects are still going is looked at again shortly.
        let pending = {
            let Some(api) = api.upgrade() else { return };
            let store = api.store_arc();
            api.crds()
                .definitions(&store)
                .await
                .crds()
                .iter()
                .any(|c| c.metadata.deletion_timestamp.is_some())
        };
        let wait = if pending {
            std::time::Duration::from_millis(500)
        } else {
            std::time::Duration::from_secs(3600)
        };
        // The sender gone (the API server dropped) ends the loop; a change or the wait's end
        // goes round again.
        if let Ok(Err(_)) = tokio::time::timeout(wait, changed.changed()).await {
            return;
        }
    }
}

async fn reconcile_all(api: &Arc<ApiServer>) {
    let store = api.store_arc();
    let crds = api.crds().definitions(&store).await.crds();
    let client = api.client_as(
        COMPONENT,
        crate::apiserver::auth::component_user("kube-apiserver"),
    );
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in &crds {
        let result = if crd.metadata.deletion_timestamp.is_some() {
            finalize(&client, &crd_api, crd).await
        } else {
            name_and_establish(&crd_api, crd, &crds).await
        };
        if let Err(error) = result {
            tracing::warn!(%error, crd = crd.metadata.name.as_deref().unwrap_or_default(), "apiextensions controller");
        }
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> CustomResourceDefinitionCondition {
    CustomResourceDefinitionCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now(),
        )),
    }
}

/// The CRD's conditions with `new` set (its transition time kept when its status is unchanged).
fn with_condition(
    crd: &CustomResourceDefinition,
    new: CustomResourceDefinitionCondition,
) -> Vec<CustomResourceDefinitionCondition> {
    let mut conditions = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) if existing.status == new.status => {
            existing.reason = new.reason;
            existing.message = new.message;
        }
        Some(existing) => *existing = new,
        None => conditions.push(new),
    }
    conditions
}

/// Which of `crd`'s names another CRD of its group already has, as the naming controller words
/// it: `(reason, message)`.
fn conflict(
    crd: &CustomResourceDefinition,
    all: &[Arc<CustomResourceDefinition>],
) -> Option<(&'static str, String)> {
    let names = &crd.spec.names;
    let others: Vec<&CustomResourceDefinitionNames> = all
        .iter()
        .filter(|o| o.metadata.name != crd.metadata.name && o.spec.group == crd.spec.group)
        .filter_map(|o| o.status.as_ref().and_then(|s| s.accepted_names.as_ref()))
        .collect();
    let taken = |f: &dyn Fn(&CustomResourceDefinitionNames) -> Option<String>, name: &str| {
        !name.is_empty() && others.iter().any(|o| f(o).as_deref() == Some(name))
    };
    if taken(&|o| Some(o.plural.clone()), &names.plural)
        || taken(&|o| o.singular.clone(), &names.plural)
    {
        return Some((
            "PluralConflict",
            format!("\"{}\" is already in use", names.plural),
        ));
    }
    let singular = names.singular.clone().unwrap_or_default();
    if taken(&|o| Some(o.plural.clone()), &singular) || taken(&|o| o.singular.clone(), &singular) {
        return Some((
            "SingularConflict",
            format!("\"{singular}\" is already in use"),
        ));
    }
    for short in names.short_names.iter().flatten() {
        let used = others.iter().any(|o| {
            o.short_names.iter().flatten().any(|s| s == short)
                || o.plural == *short
                || o.singular.as_deref() == Some(short)
        });
        if used {
            return Some((
                "ShortNamesConflict",
                format!("\"{short}\" is already in use"),
            ));
        }
    }
    if taken(&|o| Some(o.kind.clone()), &names.kind) {
        return Some((
            "KindConflict",
            format!("\"{}\" is already in use", names.kind),
        ));
    }
    let list_kind = names.list_kind.clone().unwrap_or_default();
    if taken(&|o| o.list_kind.clone(), &list_kind) {
        return Some((
            "ListKindConflict",
            format!("\"{list_kind}\" is already in use"),
        ));
    }
    None
}

async fn patch_status(
    crd_api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    status: serde_json::Value,
) -> Result<(), kube::Error> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    crd_api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map(|_| ())
}

/// The naming controller, then the establishing controller.
async fn name_and_establish(
    crd_api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    all: &[Arc<CustomResourceDefinition>],
) -> Result<(), kube::Error> {
    let accepted = crd.status.as_ref().and_then(|s| s.accepted_names.clone());
    let names_accepted = condition_true(crd, "NamesAccepted");
    let (accepted_names, names_condition) = match conflict(crd, all) {
        Some((reason, message)) => (
            accepted.clone().unwrap_or_default(),
            condition("NamesAccepted", "False", reason, &message),
        ),
        None => (
            crd.spec.names.clone(),
            condition("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
        ),
    };
    let accepted_now = names_condition.status == "True";
    if accepted.as_ref() != Some(&accepted_names) || names_accepted != accepted_now {
        let mut conditions = with_condition(crd, names_condition);
        if accepted_now && !condition_true(crd, "Established") {
            let installing = condition(
                "Established",
                "False",
                "Installing",
                "the initial names have been accepted",
            );
            let with = CustomResourceDefinition {
                status: Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionStatus {
                    conditions: Some(conditions.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            conditions = with_condition(&with, installing);
        } else if !accepted_now && !conditions.iter().any(|c| c.type_ == "Established") {
            conditions.push(condition(
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
            ));
        }
        return patch_status(
            crd_api,
            crd,
            json!({"acceptedNames": accepted_names, "conditions": conditions}),
        )
        .await;
    }
    if names_accepted && !condition_true(crd, "Established") {
        let conditions = with_condition(
            crd,
            condition(
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
        );
        return patch_status(crd_api, crd, json!({"conditions": conditions})).await;
    }
    Ok(())
}

/// The finalizer controller: deletes the CRD's objects through the API, then lets it go.
async fn finalize(
    client: &kube::Client,
    crd_api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
) -> Result<(), kube::Error> {
    let finalizers = crd.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(());
    }
    let storage = crd.spec.versions.iter().find(|v| v.storage);
    if let (Some(storage), true) = (storage, condition_true(crd, "Established")) {
        if !condition_true(crd, "Terminating")
            || crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Terminating"))
                .and_then(|c| c.reason.as_deref())
                != Some("InstanceDeletionInProgress")
        {
            let conditions = with_condition(
                crd,
                condition(
                    "Terminating",
                    "True",
                    "InstanceDeletionInProgress",
                    "CustomResource deletion is in progress",
                ),
            );
            patch_status(crd_api, crd, json!({"conditions": conditions})).await?;
        }
        let resource = ApiResource {
            group: crd.spec.group.clone(),
            version: storage.name.clone(),
            api_version: format!("{}/{}", crd.spec.group, storage.name),
            kind: crd.spec.names.kind.clone(),
            plural: crd.spec.names.plural.clone(),
        };
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let objects = all.list(&ListParams::default()).await?;
        let mut remaining = 0;
        for object in &objects.items {
            remaining += 1;
            if object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = object.metadata.name.clone().unwrap_or_default();
            let one: Api<DynamicObject> = match &object.metadata.namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            match one.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        if remaining > 0 {
            // Looked at again until the list is empty (objects with finalizers take longer).
            let left = all.list(&ListParams::default()).await?;
            if !left.items.is_empty() {
                return Ok(());
            }
        }
    }
    let conditions = with_condition(
        crd,
        condition(
            "Terminating",
            "False",
            "InstanceDeletionCompleted",
            "removed all instances",
        ),
    );
    patch_status(crd_api, crd, json!({"conditions": conditions})).await?;
    let rest: Vec<String> = finalizers
        .into_iter()
        .filter(|f| f != CLEANUP_FINALIZER)
        .collect();
    let name = crd.metadata.name.clone().unwrap_or_default();
    crd_api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": rest}})),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, accepted: bool) -> Arc<CustomResourceDefinition> {
        let mut value = json!({
            "metadata": {"name": name},
            "spec": {"group": "example.com", "scope": "Namespaced", "versions": [],
                     "names": {"plural": plural, "singular": plural.trim_end_matches('s'), "kind": kind, "listKind": format!("{kind}List")}},
        });
        if accepted {
            value["status"] = json!({"acceptedNames": value["spec"]["names"].clone()});
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn names_another_crd_of_the_group_has_are_refused_in_the_naming_controllers_words() {
        let first = crd("widgets.example.com", "widgets", "Widget", true);
        let same_plural = crd("widgets2.example.com", "widgets", "Gadget", false);
        let same_kind = crd("gadgets.example.com", "gadgets", "Widget", false);
        let fine = crd("things.example.com", "things", "Thing", false);
        let all = vec![first.clone(), same_plural.clone(), same_kind.clone()];
        assert_eq!(
            conflict(&same_plural, &all),
            Some(("PluralConflict", "\"widgets\" is already in use".into()))
        );
        assert_eq!(
            conflict(&same_kind, &all),
            Some(("KindConflict", "\"Widget\" is already in use".into()))
        );
        assert_eq!(conflict(&fine, &all), None);
        assert_eq!(conflict(&first, &all), None);
    }
}
