-- wrk -t2 -c16 -d8s -s get.lua http://127.0.0.1:PORT/api/v1/people/ID
wrk.headers["X-Klipy-Api-Key"] = "klipy_api_demo"
