//! Compiles `proto/` (etcd v3's API as cairn writes it) into prost messages and tonic services
//! at build time, with protox, a protobuf compiler in Rust: building needs no `protoc`.

use std::io;

/// The files compiled, relative to `proto/`; their imports are found there too.
const PROTOS: &[&str] = &[
    "mvccpb/kv.proto",
    "authpb/auth.proto",
    "etcdserverpb/rpc.proto",
    "v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto",
];

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let files = protox::compile(PROTOS, ["proto"]).map_err(io::Error::other)?;
    tonic_prost_build::configure().build_client(false).build_server(true).compile_fds(files)
}
