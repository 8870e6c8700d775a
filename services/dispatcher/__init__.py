"""The dispatcher: places pending jobs on live workers, retries, fails over."""
