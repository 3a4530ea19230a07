//! Which Ingresses belong to this controller.
//!
//! An Ingress is ours when:
//! 1. `spec.ingressClassName` names an IngressClass whose `spec.controller` is
//!    ours; otherwise
//! 2. the legacy `kubernetes.io/ingress.class` annotation names such a class, or
//!    equals the configured legacy class name; otherwise
//! 3. it has no class at all and an IngressClass of ours is marked default with
//!    `ingressclass.kubernetes.io/is-default-class: "true"`.

use std::collections::BTreeMap;

use crate::{
    annotations::INGRESS_CLASS,
    source::{Ingress, IngressClass},
};

/// The default `spec.controller` value this controller claims.
pub const DEFAULT_CONTROLLER: &str = "rancher.io/ingress";
/// The default legacy class name accepted in `kubernetes.io/ingress.class`.
pub const DEFAULT_LEGACY_CLASS: &str = "rancher";

/// The class rules' configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassConfig {
    /// The `spec.controller` value of our IngressClasses.
    pub controller: String,
    /// The class name accepted in the legacy annotation without an IngressClass.
    pub legacy_class: String,
}

impl Default for ClassConfig {
    fn default() -> Self {
        Self {
            controller: DEFAULT_CONTROLLER.to_owned(),
            legacy_class: DEFAULT_LEGACY_CLASS.to_owned(),
        }
    }
}

impl ClassConfig {
    /// Whether `ingress` is ours, given the IngressClasses by name.
    pub fn owns(&self, ingress: &Ingress, classes: &BTreeMap<String, IngressClass>) -> bool {
        let ours = |name: &str| {
            classes
                .get(name)
                .is_some_and(|class| class.controller == self.controller)
        };
        if let Some(name) = ingress.class_name.as_deref().filter(|n| !n.is_empty()) {
            return ours(name);
        }
        if let Some(name) = ingress
            .annotations
            .get(INGRESS_CLASS)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
        {
            return name == self.legacy_class || ours(name);
        }
        classes
            .values()
            .any(|class| class.is_default && class.controller == self.controller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, controller: &str, is_default: bool) -> (String, IngressClass) {
        (
            name.to_owned(),
            IngressClass {
                name: name.into(),
                controller: controller.into(),
                is_default,
            },
        )
    }

    fn ingress(class_name: Option<&str>, annotation: Option<&str>) -> Ingress {
        let mut ingress = Ingress {
            class_name: class_name.map(str::to_owned),
            ..Ingress::default()
        };
        if let Some(value) = annotation {
            ingress
                .annotations
                .insert(INGRESS_CLASS.to_owned(), value.to_owned());
        }
        ingress
    }

    #[test]
    fn ownership_rules() {
        let config = ClassConfig::default();
        let classes: BTreeMap<_, _> = [
            class("rancher", DEFAULT_CONTROLLER, false),
            class("nginx", "k8s.io/ingress-nginx", false),
        ]
        .into();
        assert!(config.owns(&ingress(Some("rancher"), None), &classes));
        assert!(!config.owns(&ingress(Some("nginx"), None), &classes));
        assert!(!config.owns(&ingress(Some("missing"), None), &classes));
        // The field wins over the annotation.
        assert!(!config.owns(&ingress(Some("nginx"), Some("rancher")), &classes));
        assert!(config.owns(&ingress(None, Some("rancher")), &classes));
        assert!(!config.owns(&ingress(None, Some("nginx")), &classes));
        // Class-less: only with a default class of ours.
        assert!(!config.owns(&ingress(None, None), &classes));
        assert!(!config.owns(&ingress(None, Some("")), &classes));
        let with_default: BTreeMap<_, _> = [class("ours", DEFAULT_CONTROLLER, true)].into();
        assert!(config.owns(&ingress(None, None), &with_default));
        let other_default: BTreeMap<_, _> = [class("theirs", "example.org/lb", true)].into();
        assert!(!config.owns(&ingress(None, None), &other_default));
        // The legacy name works without any IngressClass.
        assert!(config.owns(&ingress(None, Some("rancher")), &BTreeMap::new()));
    }
}
