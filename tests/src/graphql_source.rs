//! A real GraphQL server on loopback for the tests of subscriptions' queries: a small
//! order/invoice schema (seed 003's entities: an invoice, its parent order, its line items
//! and the order's shipments) served by async-graphql over HTTP, its data kept per tenant
//! as Herald's `herald-tenant` header names it, behind a bearer token.
//!
//! An invoice whose id starts with `slow` answers after three seconds; one the tenant does
//! not have is a GraphQL error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject, Variables,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::receiver::listen_on_loopback;

#[derive(Clone, Debug, SimpleObject)]
pub struct Shipment {
    pub id: ID,
    pub carrier: String,
}

#[derive(Clone, Debug, SimpleObject)]
pub struct Order {
    pub id: ID,
    pub status: String,
    pub shipments: Vec<Shipment>,
}

#[derive(Clone, Debug, SimpleObject)]
pub struct LineItem {
    pub sku: String,
    pub quantity: i32,
}

#[derive(Clone, Debug, SimpleObject)]
pub struct Invoice {
    pub id: ID,
    pub total: f64,
    pub order: Order,
    pub line_items: Vec<LineItem>,
}

/// Invoices by tenant and id.
type Store = Arc<Mutex<HashMap<(String, String), Invoice>>>;

/// The tenant a request is for.
struct Tenant(String);

struct Query;

#[Object]
impl Query {
    /// One of the calling tenant's invoices.
    async fn invoice(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Invoice> {
        if id.starts_with("slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let tenant = &ctx.data::<Tenant>()?.0;
        let store = ctx.data::<Store>()?;
        let found = store
            .lock()
            .unwrap()
            .get(&(tenant.clone(), id.to_string()))
            .cloned();
        found.ok_or_else(|| format!("no invoice {} for this tenant", id.as_str()).into())
    }

    /// One of the calling tenant's orders.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        let tenant = &ctx.data::<Tenant>()?.0;
        let store = ctx.data::<Store>()?;
        let store = store.lock().unwrap();
        Ok(store
            .iter()
            .find(|((t, _), invoice)| t == tenant && invoice.order.id == id)
            .map(|(_, invoice)| invoice.order.clone()))
    }
}

/// One request the source answered.
#[derive(Clone, Debug)]
pub struct SourceRequest {
    pub tenant: Option<String>,
    pub authorization: Option<String>,
    pub body: Value,
}

struct State {
    schema: Schema<Query, EmptyMutation, EmptySubscription>,
    token: String,
    requests: Mutex<Vec<SourceRequest>>,
}

pub struct GraphqlSource {
    addr: SocketAddr,
    store: Store,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl Drop for GraphqlSource {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(
    state: Arc<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (tenant, authorization) = (header("herald-tenant"), header("authorization"));
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(SourceRequest {
        tenant: tenant.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    let respond = |status: StatusCode, value: Value| {
        let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        Ok(response)
    };
    if authorization.as_deref() != Some(format!("Bearer {}", state.token).as_str()) {
        return respond(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"message": "unauthorized"}]}),
        );
    }
    let Some(query) = body["query"].as_str() else {
        return respond(
            StatusCode::BAD_REQUEST,
            json!({"errors": [{"message": "no query"}]}),
        );
    };
    let mut gql = async_graphql::Request::new(query)
        .variables(Variables::from_json(body["variables"].clone()));
    // Introspection needs no tenant; every query about data does.
    if let Some(tenant) = tenant {
        gql = gql.data(Tenant(tenant));
    }
    let response = state.schema.execute(gql).await;
    respond(
        StatusCode::OK,
        serde_json::to_value(&response).unwrap_or(Value::Null),
    )
}

impl GraphqlSource {
    /// Serves on 127.0.0.1 and a free port, accepting `Bearer <token>`.
    pub async fn start(token: &str) -> Self {
        let listener = listen_on_loopback();
        let addr = listener.local_addr().expect("the source's address");
        let store: Store = Arc::default();
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .data(Arc::clone(&store))
            .finish();
        let state = Arc::new(State {
            schema,
            token: token.to_owned(),
            requests: Mutex::new(Vec::new()),
        });
        let serving = Arc::clone(&state);
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(Arc::clone(&state), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            store,
            state,
            server,
        }
    }

    /// `http://127.0.0.1:<port>/graphql`.
    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// Gives `tenant` an invoice `id` of `total`, for order `order` with one shipment.
    pub fn add_invoice(&self, tenant: &str, id: &str, total: f64, order: &str) {
        let invoice = Invoice {
            id: ID::from(id),
            total,
            order: Order {
                id: ID::from(order),
                status: "SHIPPED".into(),
                shipments: vec![Shipment {
                    id: ID::from(format!("shp_{order}")),
                    carrier: "DHL".into(),
                }],
            },
            line_items: vec![LineItem {
                sku: "SKU-1".into(),
                quantity: 2,
            }],
        };
        self.store
            .lock()
            .unwrap()
            .insert((tenant.to_owned(), id.to_owned()), invoice);
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<SourceRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}
