//! Parses the Kubernetes API's protobuf definitions (`proto/`) into a descriptor set, with the
//! pure-Rust parser (no `protoc`), for decoding protobuf request bodies at run time; and
//! gnostic's OpenAPI v2 message (`openapi/OpenAPIv2.proto`) into another, with which the unit
//! tests read back the protobuf `/openapi/v2`. It also lists the lessons (`lessons/*.yaml`) for
//! `learn::catalogue` to embed, so adding a lesson file is all it takes.

use std::path::PathBuf;

use protobuf::Message;

const FILES: &[&str] = &[
    "apimachinery/pkg/runtime/schema",
    "apimachinery/pkg/runtime",
    "apimachinery/pkg/util/intstr",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/apis/meta/v1",
    "api/core/v1",
    "api/apps/v1",
    "api/autoscaling/v1",
    "api/autoscaling/v2",
    "api/batch/v1",
    "api/coordination/v1",
    "api/discovery/v1",
    "api/events/v1",
    "api/networking/v1",
    "api/policy/v1",
    "api/storage/v1",
    "api/rbac/v1",
    "api/authentication/v1",
    "api/authorization/v1",
    "api/certificates/v1",
    "api/admissionregistration/v1",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=openapi/OpenAPIv2.proto");
    println!("cargo:rerun-if-changed=lessons");
    embed_lessons();
    let inputs: Vec<PathBuf> = FILES
        .iter()
        .map(|f| PathBuf::from(format!("proto/{f}/generated.proto")))
        .collect();
    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include("proto")
        .inputs(&inputs)
        .parse_and_typecheck()
        .expect("the Kubernetes .proto files in proto/ parse");
    let mut set = protobuf::descriptor::FileDescriptorSet::new();
    set.file = parsed.file_descriptors;
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("kubernetes.fds");
    std::fs::write(out, set.write_to_bytes().expect("a descriptor set encodes"))
        .expect("OUT_DIR is writable");

    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include("openapi")
        .input("openapi/OpenAPIv2.proto")
        .parse_and_typecheck()
        .expect("openapi/OpenAPIv2.proto parses");
    let mut set = protobuf::descriptor::FileDescriptorSet::new();
    set.file = parsed.file_descriptors;
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("openapiv2.fds");
    std::fs::write(out, set.write_to_bytes().expect("a descriptor set encodes"))
        .expect("OUT_DIR is writable");
}

/// Writes `lessons.rs` into `OUT_DIR`: every `lessons/*.yaml` as `(file name, text)`, in name
/// order, each through `include_str!` (so a changed lesson rebuilds the binary).
fn embed_lessons() {
    let dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("lessons");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("lessons/ is readable")
        .map(|entry| entry.expect("lessons/ is readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("lesson file names are UTF-8")
                .to_owned();
            (name, path)
        })
        .collect();
    files.sort();
    let mut code = String::from(
        "/// Every lesson file in `lessons/`: (file name, text).\npub(crate) const EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for (name, path) in files {
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("lessons.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}
