-- wrk script: POST the demo service account's JWT to the login route.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"k8s_role": "web", "jwt": "' .. os.getenv("DEMO_JWT") .. '"}'
