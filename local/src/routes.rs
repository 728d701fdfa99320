//! The HTTP API's routes, read from the `HttpApi` events of `template.yaml`, so the local
//! gateway passes a function exactly the calls the deployed API would, and a route missing
//! from the template is a 404 here too rather than a surprise after `sam deploy`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use yaml_serde::Value;

/// The properties of an `HttpApi` event that declares none: the catch-all route.
static NO_PROPERTIES: Value = Value::Null;

/// The functions the local gateway can invoke, named by their binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Ingest,
    Manage,
}

impl Function {
    fn from_binary(binary: &str) -> Option<Self> {
        match binary {
            "ingest" => Some(Self::Ingest),
            "manage" => Some(Self::Manage),
            _ => None,
        }
    }
}

/// One route: `ANY` or a method, and a path template such as `/v1/subscriptions/{proxy+}`
/// (`None`: the `$default` route).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: Option<String>,
    pub function: Function,
    /// `Auth: Authorizer: NONE`: no token asked for.
    pub public: bool,
    /// `Auth: AuthorizationScopes`: the token must carry one of them (none: any token).
    pub scopes: Vec<String>,
    /// The function's `Timeout`: the function's own, else the template's `Globals`, else
    /// Lambda's default of 3 seconds.
    pub timeout: Duration,
}

/// Lambda's timeout for a function that states none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// A function's `Timeout` in seconds as the template states it (a number).
fn timeout_of(properties: Option<&Value>) -> Option<Duration> {
    properties?
        .get("Timeout")?
        .as_u64()
        .map(Duration::from_secs)
}

impl Route {
    /// The `routeKey` API Gateway puts in the event.
    pub fn key(&self) -> String {
        match &self.path {
            Some(path) => format!("{} {path}", self.method),
            None => "$default".to_owned(),
        }
    }

    /// The path parameters when `path` is on this route, URL-decoded as API Gateway hands
    /// them to the function ("API Gateway decodes URL-encoded request parameters before
    /// passing them to your backend integration",
    /// <https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html>):
    /// `/v1/events/ord%3A1` names the event `ord:1`. The route is matched on the path as
    /// sent, so an encoded `/` stays inside its segment.
    fn parameters(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let Some(template) = &self.path else {
            return Some(BTreeMap::new());
        };
        let wanted = template.trim_start_matches('/').split('/');
        let mut given = path.trim_start_matches('/').split('/');
        let mut parameters = BTreeMap::new();
        for part in wanted {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
                // A greedy variable is last and takes one or more segments.
                let rest: Vec<&str> = given.by_ref().collect();
                if rest.is_empty() || rest == [""] {
                    return None;
                }
                parameters.insert(name.to_owned(), decoded(&rest.join("/")));
                return Some(parameters);
            }
            let segment = given.next()?;
            match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !segment.is_empty() => {
                    parameters.insert(name.to_owned(), decoded(segment));
                }
                Some(_) => return None,
                None if part == segment => {}
                None => return None,
            }
        }
        given.next().is_none().then_some(parameters)
    }

    /// Higher is more specific: API Gateway prefers exact paths to greedy ones, literal
    /// segments to variables, and a named method to `ANY`.
    fn specificity(&self) -> (bool, bool, usize, bool) {
        let path = self.path.as_deref();
        (
            path.is_some(),
            !path.is_some_and(|p| p.contains("+}")),
            path.map_or(0, |p| p.split('/').filter(|s| !s.starts_with('{')).count()),
            self.method != "ANY",
        )
    }
}

/// `text` with its `%XX` escapes decoded (a `+` stays a `+`: it is not a query string).
fn decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A request matched to its route.
#[derive(Debug)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub path_parameters: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn from_template(path: &Path) -> anyhow::Result<Self> {
        let source =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&source).with_context(|| format!("reading the routes of {}", path.display()))
    }

    pub fn parse(template: &str) -> anyhow::Result<Self> {
        let template: Value = yaml_serde::from_str(template)?;
        let mut routes = Vec::new();
        let resources = template.get("Resources").and_then(Value::as_mapping);
        let global_timeout = timeout_of(template.get("Globals").and_then(|g| g.get("Function")));
        for (logical, resource) in resources.into_iter().flatten() {
            if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
                continue;
            }
            let timeout = timeout_of(resource.get("Properties"))
                .or(global_timeout)
                .unwrap_or(DEFAULT_TIMEOUT);
            let events = resource
                .get("Properties")
                .and_then(|p| p.get("Events"))
                .and_then(Value::as_mapping);
            let http_events: Vec<&Value> = events
                .into_iter()
                .flatten()
                .filter(|(_, e)| e.get("Type").and_then(Value::as_str) == Some("HttpApi"))
                .map(|(_, e)| e.get("Properties").unwrap_or(&NO_PROPERTIES))
                .collect();
            if http_events.is_empty() {
                continue;
            }
            let name = logical.as_str().unwrap_or("a function");
            let binary = resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("{name} has no Metadata.BuildProperties.Binary"))?;
            let function = Function::from_binary(binary)
                .ok_or_else(|| anyhow!("{name} serves HTTP from `{binary}`, unknown here"))?;
            for event in http_events {
                let method = event.get("Method").and_then(Value::as_str);
                let path = event.get("Path").and_then(Value::as_str);
                if method.is_some() != path.is_some() {
                    bail!("{name} has an HttpApi event with only one of Method and Path");
                }
                let auth = event.get("Auth");
                let public = auth
                    .and_then(|a| a.get("Authorizer"))
                    .and_then(Value::as_str)
                    == Some("NONE");
                let scopes = auth
                    .and_then(|a| a.get("AuthorizationScopes"))
                    .and_then(Value::as_sequence)
                    .map(|list| {
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                routes.push(Route {
                    method: method.unwrap_or("ANY").to_ascii_uppercase(),
                    path: path.map(str::to_owned),
                    function,
                    public,
                    scopes,
                    timeout,
                });
            }
        }
        Ok(Self(routes))
    }

    /// The stage the template's HTTP API is deployed to: its `StageName`, a parameter's
    /// default where it is a `!Ref`, and `$default` where it has none (as SAM does).
    pub fn stage_of(template: &str) -> anyhow::Result<String> {
        let template: Value = yaml_serde::from_str(template)?;
        let resources = template.get("Resources").and_then(Value::as_mapping);
        let api = resources.into_iter().flatten().find(|(_, r)| {
            r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::HttpApi")
        });
        let Some(stage) = api.and_then(|(_, r)| r.get("Properties")?.get("StageName")) else {
            return Ok("$default".to_owned());
        };
        match stage {
            Value::String(name) => Ok(name.clone()),
            Value::Tagged(tagged) if tagged.tag == "Ref" => {
                let parameter = tagged.value.as_str().unwrap_or_default();
                template
                    .get("Parameters")
                    .and_then(|p| p.get(parameter))
                    .and_then(|p| p.get("Default"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        anyhow!(
                            "the HttpApi's StageName refers to `{parameter}`, which has no default"
                        )
                    })
            }
            other => bail!("the HttpApi's StageName is neither a name nor a !Ref: {other:?}"),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }

    /// The most specific route for this call, as API Gateway chooses it.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        self.0
            .iter()
            .filter(|r| r.method == "ANY" || r.method.eq_ignore_ascii_case(method))
            .filter_map(|route| {
                Some(Matched {
                    path_parameters: route.parameters(path)?,
                    route,
                })
            })
            .max_by_key(|m| m.route.specificity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r"
Resources:
  Ingest:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: ingest } }
    Properties:
      Events:
        Publish: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: POST, Path: /v1/events } }
  Manage:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: manage } }
    Properties:
      Events:
        List: { Type: HttpApi, Properties: { Method: ANY, Path: /v1/subscriptions } }
        One: { Type: HttpApi, Properties: { Method: ANY, Path: '/v1/subscriptions/{proxy+}' } }
        Key: { Type: HttpApi, Properties: { Method: GET, Path: '/v1/keys/{id}' } }
  Deliver:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Queue: { Type: SQS, Properties: { Queue: !GetAtt Queue.Arn } }
";

    fn routes() -> Routes {
        Routes::parse(TEMPLATE).unwrap()
    }

    /// A route runs for its function's `Timeout`: its own, the `Globals`' or Lambda's 3 s;
    /// the template's HTTP functions have 29 s.
    #[test]
    fn a_route_has_its_functions_timeout() {
        assert!(routes().iter().all(|r| r.timeout == DEFAULT_TIMEOUT));
        let globals = format!("Globals:\n  Function:\n    Timeout: 7\n{TEMPLATE}");
        assert!(
            Routes::parse(&globals)
                .unwrap()
                .iter()
                .all(|r| r.timeout == Duration::from_secs(7))
        );
        let own = TEMPLATE.replacen(
            "Properties:\n      Events:",
            "Properties:\n      Timeout: 11\n      Events:",
            1,
        );
        let own = Routes::parse(&format!("Globals:\n  Function:\n    Timeout: 7\n{own}")).unwrap();
        let timeout_of = |key: &str| own.iter().find(|r| r.key() == key).unwrap().timeout;
        assert_eq!(timeout_of("POST /v1/events"), Duration::from_secs(11));
        assert_eq!(timeout_of("ANY /v1/subscriptions"), Duration::from_secs(7));
        let template = std::fs::read_to_string(crate::template_path()).unwrap();
        assert!(
            Routes::parse(&template)
                .unwrap()
                .iter()
                .all(|r| r.timeout == Duration::from_secs(29))
        );
    }

    #[test]
    fn each_http_event_of_the_template_is_a_route() {
        let keys: Vec<String> = routes().iter().map(Route::key).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert!(keys.contains(&"POST /v1/events".to_owned()));
        assert!(keys.contains(&"ANY /v1/subscriptions/{proxy+}".to_owned()));
    }

    #[test]
    fn calls_go_to_the_function_the_template_names() {
        let routes = routes();
        let publish = routes.find("POST", "/v1/events").unwrap();
        assert_eq!(publish.route.function, Function::Ingest);
        let list = routes.find("GET", "/v1/subscriptions").unwrap();
        assert_eq!(list.route.key(), "ANY /v1/subscriptions");
        let rotate = routes
            .find("POST", "/v1/subscriptions/sub_1/secret/rotate")
            .unwrap();
        assert_eq!(rotate.route.function, Function::Manage);
        assert_eq!(rotate.path_parameters["proxy"], "sub_1/secret/rotate");
        let key = routes.find("GET", "/v1/keys/k1").unwrap();
        assert_eq!(key.path_parameters["id"], "k1");
    }

    /// Path parameters reach the function decoded, as API Gateway hands them over; the
    /// route is chosen on the path as sent.
    #[test]
    fn path_parameters_are_url_decoded() {
        let routes = routes();
        let key = routes.find("GET", "/v1/keys/ord%3A1.shipped").unwrap();
        assert_eq!(key.path_parameters["id"], "ord:1.shipped");
        let encoded_slash = routes.find("GET", "/v1/keys/a%2Fb").unwrap();
        assert_eq!(encoded_slash.route.key(), "GET /v1/keys/{id}");
        assert_eq!(encoded_slash.path_parameters["id"], "a/b");
        let greedy = routes
            .find("GET", "/v1/subscriptions/sub_1/deliveries%3Fx/y+z")
            .unwrap();
        assert_eq!(greedy.path_parameters["proxy"], "sub_1/deliveries?x/y+z");
    }

    #[test]
    fn what_the_template_does_not_route_is_not_found() {
        let routes = routes();
        assert!(routes.find("GET", "/v1/events").is_none());
        assert!(routes.find("POST", "/v1/event").is_none());
        assert!(routes.find("GET", "/v1/subscriptionsx").is_none());
        assert!(routes.find("GET", "/v1/subscriptions/").is_none());
        assert!(routes.find("GET", "/v1/keys/k1/more").is_none());
        assert!(routes.find("GET", "/v1/keys/").is_none());
        assert!(routes.find("GET", "/").is_none());
    }

    #[test]
    fn a_catch_all_route_takes_what_nothing_else_does() {
        let template = format!(
            "{TEMPLATE}  Fallback:
    Type: AWS::Serverless::Function
    Metadata: {{ BuildProperties: {{ Binary: manage }} }}
    Properties:
      Events:
        Any: {{ Type: HttpApi }}
"
        );
        let routes = Routes::parse(&template).unwrap();
        assert_eq!(
            routes.find("GET", "/elsewhere").unwrap().route.key(),
            "$default"
        );
        assert_eq!(
            routes.find("POST", "/v1/events").unwrap().route.key(),
            "POST /v1/events"
        );
    }

    #[test]
    fn the_stage_is_the_templates() {
        let with = |api: &str| {
            format!(
                "Parameters:\n  Stage: {{ Type: String, Default: dev }}\nResources:\n  Api:\n{api}"
            )
        };
        assert_eq!(
            Routes::stage_of(&with(
                "    Type: AWS::Serverless::HttpApi\n    Properties: { StageName: !Ref Stage }\n"
            ))
            .unwrap(),
            "dev"
        );
        assert_eq!(
            Routes::stage_of(&with(
                "    Type: AWS::Serverless::HttpApi\n    Properties: { StageName: prod }\n"
            ))
            .unwrap(),
            "prod"
        );
        assert_eq!(
            Routes::stage_of(&with("    Type: AWS::Serverless::HttpApi\n")).unwrap(),
            "$default"
        );
        assert_eq!(Routes::stage_of(TEMPLATE).unwrap(), "$default");
        let repository = std::fs::read_to_string(crate::template_path()).unwrap();
        assert_eq!(Routes::stage_of(&repository).unwrap(), "dev");
    }

    #[test]
    fn a_route_to_a_binary_the_runner_cannot_serve_is_refused() {
        let template = TEMPLATE.replace("Binary: manage", "Binary: reports");
        let error = Routes::parse(&template).unwrap_err().to_string();
        assert!(error.contains("reports"), "{error}");
    }

    #[test]
    fn the_repository_template_routes_every_call_the_functions_serve() {
        let routes = Routes::from_template(&crate::template_path()).unwrap();
        let served = herald_ingest::ROUTES
            .iter()
            .map(|r| (Function::Ingest, r))
            .chain(herald_manage::ROUTES.iter().map(|r| (Function::Manage, r)));
        for (function, (method, template)) in served {
            let path = template.replace("{id}", "x_1");
            let matched = routes.find(method, &path);
            assert_eq!(
                matched.map(|m| m.route.function),
                Some(function),
                "template.yaml routes no {method} {template} to {function:?}"
            );
        }
    }
}
