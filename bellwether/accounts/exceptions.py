class AccountError(Exception):
    code = "invalid"
