fn main() -> Result<(), lambda_http::Error> {
    herald_aws::lambda::wiring::run_http::<herald_ingest::Ingest>()
}
