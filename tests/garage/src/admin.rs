//! Garage's admin API v2 (`/v2/<Operation>`, JSON, bearer token): the calls that set up
//! a cluster and report its state. Answers are read into the few fields used; an
//! answer that is not 2xx is an error quoting Garage's message.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{self, Answer};

/// The capacity given to each node's role (Garage only compares them).
const CAPACITY: u64 = 1 << 30;

/// The admin API of one node.
pub struct Admin {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeInfo {
    node_id: String,
}

/// `MultiResponse` of node-local calls: answers by node id.
#[derive(Deserialize)]
struct PerNode<T> {
    success: std::collections::HashMap<String, T>,
    error: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterStatus {
    nodes: Vec<NodeStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeStatus {
    id: String,
    is_up: bool,
}

#[derive(Deserialize)]
struct Connected {
    success: bool,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Layout {
    version: u64,
}

#[derive(Deserialize)]
struct Bucket {
    id: String,
}

impl Admin {
    /// `GET /health`: whether the node says the cluster can serve reads and writes
    /// (no token needed); the answer's status and text.
    pub fn health(&self) -> Result<Answer> {
        let req = Request::get(format!("{}/health", self.endpoint)).body(Full::default())?;
        http::send(req)
    }

    /// The node's own full id.
    pub fn node_id(&self) -> Result<String> {
        let info: PerNode<NodeInfo> = self.get("GetNodeInfo?node=self")?;
        match info.success.into_values().next() {
            Some(node) => Ok(node.node_id),
            None => bail!("GetNodeInfo answered no node: {:?}", info.error),
        }
    }

    /// The ids of the nodes this node is connected to (itself included).
    pub fn up_nodes(&self) -> Result<Vec<String>> {
        let status: ClusterStatus = self.get("GetClusterStatus")?;
        Ok(status
            .nodes
            .into_iter()
            .filter(|n| n.is_up)
            .map(|n| n.id)
            .collect())
    }

    /// Asks the node to connect to `peers` (`id@host:port`); the failures, by peer.
    pub fn connect(&self, peers: &[String]) -> Result<Vec<(String, String)>> {
        let answers: Vec<Connected> = self.post("ConnectClusterNodes", &json!(peers))?;
        Ok(peers
            .iter()
            .zip(answers)
            .filter(|(_, a)| !a.success)
            .map(|(p, a)| (p.clone(), a.error.unwrap_or_default()))
            .collect())
    }

    /// Gives each node of `roles` (id, zone) a storage role and applies the layout.
    pub fn apply_roles(&self, roles: &[(String, String)]) -> Result<()> {
        let roles: Vec<Value> = roles
            .iter()
            .map(|(id, zone)| json!({"id": id, "zone": zone, "capacity": CAPACITY, "tags": []}))
            .collect();
        let staged: Layout = self.post("UpdateClusterLayout", &json!({ "roles": roles }))?;
        let _: Value = self.post(
            "ApplyClusterLayout",
            &json!({ "version": staged.version + 1 }),
        )?;
        Ok(())
    }

    /// Imports an S3 key with its secret.
    pub fn import_key(&self, key_id: &str, secret: &str, name: &str) -> Result<()> {
        let body = json!({"accessKeyId": key_id, "secretAccessKey": secret, "name": name});
        let _: Value = self.post("ImportKey", &body)?;
        Ok(())
    }

    /// The id of the bucket named `alias`, if there is one.
    pub fn bucket_id(&self, alias: &str) -> Result<Option<String>> {
        let answer = self.call("GET", &format!("GetBucketInfo?globalAlias={alias}"), None)?;
        if answer.status == 404 {
            return Ok(None);
        }
        Ok(Some(parse::<Bucket>("GetBucketInfo", answer)?.id))
    }

    /// Creates the bucket named `alias`; its id.
    pub fn create_bucket(&self, alias: &str) -> Result<String> {
        let bucket: Bucket = self.post("CreateBucket", &json!({ "globalAlias": alias }))?;
        Ok(bucket.id)
    }

    /// Lets `key_id` read, write and own the bucket `bucket_id`.
    pub fn allow(&self, bucket_id: &str, key_id: &str) -> Result<()> {
        let body = json!({
            "bucketId": bucket_id,
            "accessKeyId": key_id,
            "permissions": {"read": true, "write": true, "owner": true},
        });
        let _: Value = self.post("AllowBucketKey", &body)?;
        Ok(())
    }

    fn get<T: DeserializeOwned>(&self, op: &str) -> Result<T> {
        parse(op, self.call("GET", op, None)?)
    }

    fn post<T: DeserializeOwned>(&self, op: &str, body: &Value) -> Result<T> {
        parse(op, self.call("POST", op, Some(body))?)
    }

    fn call(&self, method: &str, op: &str, body: Option<&Value>) -> Result<Answer> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method)
            .uri(format!("{}/v2/{op}", self.endpoint))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        http::send(req).with_context(|| format!("admin API {op}"))
    }
}

fn parse<T: DeserializeOwned>(op: &str, answer: Answer) -> Result<T> {
    if !answer.ok() {
        bail!("admin API {op}: HTTP {}: {}", answer.status, answer.text());
    }
    serde_json::from_slice(&answer.body)
        .with_context(|| format!("admin API {op}: unexpected answer {}", answer.text()))
}
