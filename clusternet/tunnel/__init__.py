"""clusternet.tunnel"""
