//! The objects a kustomization assembles, for the kustomize fields Strata's overlays use.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{is_workload, kind, name};
use crate::yaml::strings;
use crate::{load_yaml_documents, repo_root};

/// What one kustomization assembles.
#[derive(Debug, Default)]
pub struct Build {
    pub objects: Vec<Value>,
    /// Keys of each generated object, by (kind, name).
    pub generated: BTreeMap<(String, String), BTreeSet<String>>,
    /// Every file a secret generator reads, relative to the repository root.
    pub secret_files: Vec<PathBuf>,
}

impl Build {
    /// The objects of one kind.
    pub fn of_kind<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| kind(o) == k)
    }

    /// The object of this kind and name.
    pub fn find(&self, k: &str, n: &str) -> Option<&Value> {
        self.objects.iter().find(|o| kind(o) == k && name(o) == n)
    }

    /// The Deployments, StatefulSets and Jobs.
    pub fn workloads(&self) -> impl Iterator<Item = &Value> {
        self.objects.iter().filter(|o| is_workload(o))
    }
}

/// The kustomization fields [`build`] reproduces; any other fails the build, since it
/// could change the objects behind the checks' back.
const KUSTOMIZATION_KEYS: [&str; 9] = [
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "components",
    "configMapGenerator",
    "secretGenerator",
    "images",
    "configurations",
];

/// Assembles the kustomization in `dir` (relative to the repository root). Panics on what
/// it cannot reproduce, on a ConfigMap file that is missing, and on a generator conflict.
pub fn build(dir: &str) -> Build {
    let mut out = Build::default();
    add_kustomization(Path::new(dir), &mut out);
    out
}

fn add_kustomization(dir: &Path, out: &mut Build) {
    let docs = load_yaml_documents(dir.join("kustomization.yaml")).expect("kustomization loads");
    let k = &docs[0];
    for key in k.as_object().expect("a mapping").keys() {
        assert!(
            KUSTOMIZATION_KEYS.contains(&key.as_str()),
            "{}: `{key}` changes objects in a way these tests do not reproduce; extend them",
            dir.display()
        );
    }
    for entry in strings(&k["resources"]) {
        let path = dir.join(&entry);
        if repo_root().join(&path).is_dir() {
            add_kustomization(&path, out);
        } else {
            let objects = load_yaml_documents(&path).expect("resource loads");
            out.objects.extend(objects);
        }
    }
    for entry in strings(&k["components"]) {
        add_kustomization(&dir.join(entry), out);
    }
    for (field, kind) in [
        ("configMapGenerator", "ConfigMap"),
        ("secretGenerator", "Secret"),
    ] {
        for generator in k[field].as_array().into_iter().flatten() {
            let name = generator["name"]
                .as_str()
                .expect("generator name")
                .to_owned();
            let mut keys = BTreeSet::new();
            for file in strings(&generator["files"]) {
                let (key, path) = match file.split_once('=') {
                    Some((key, path)) => (key.to_owned(), path.to_owned()),
                    None => (basename(&file), file.clone()),
                };
                keys.insert(key);
                if kind == "Secret" {
                    out.secret_files.push(dir.join(path));
                } else {
                    assert!(
                        repo_root().join(dir).join(&path).is_file(),
                        "{}: {kind} {name} reads {path}, which is missing",
                        dir.display()
                    );
                }
            }
            for literal in strings(&generator["literals"]) {
                let (key, _) = literal.split_once('=').expect("literal is KEY=value");
                keys.insert(key.to_owned());
            }
            assert!(
                generator.get("envs").is_none(),
                "envs generators: extend the tests"
            );
            let id = (kind.to_owned(), name.clone());
            match generator["behavior"].as_str().unwrap_or("create") {
                "create" => {
                    let previous = out.generated.insert(id, keys);
                    assert!(previous.is_none(), "{kind} {name} generated twice");
                }
                "merge" => out
                    .generated
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("{kind} {name} merged but never created"))
                    .extend(keys),
                other => panic!("generator behavior {other}: extend the tests"),
            }
        }
    }
}

fn basename(path: &str) -> String {
    Path::new(path)
        .file_name()
        .and_then(OsStr::to_str)
        .expect("a file name")
        .to_owned()
}
