fn main() -> Result<(), lambda_runtime::Error> {
    herald_aws::lambda::wiring::run_sqs::<herald_deliver::Deliver>()
}
