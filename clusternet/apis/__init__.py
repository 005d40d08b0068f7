"""clusternet.apis"""
