"""AWS resource kinds (find/create/update/delete with boto3) and delete discovery."""
