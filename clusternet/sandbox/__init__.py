"""clusternet.sandbox"""
