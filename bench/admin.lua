-- wrk script: an admin listing with the bootstrap token.
wrk.method = "GET"
wrk.headers["X-Auth-Token"] = os.getenv("DEMO_ADMIN_TOKEN")
