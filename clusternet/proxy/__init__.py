"""clusternet.proxy"""
